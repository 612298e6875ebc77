"""Replicas configured with the same MCP state keys open each other's sealed elicitation
state; without shared keys (one key per process) they cannot."""

from __future__ import annotations

import pytest

from tools.server import state_security


def test_replicas_with_shared_keys_unseal_each_others_state() -> None:
    keys = ["a-long-random-secret-shared-by-every-replica-0001"]
    a, b = state_security(keys), state_security(list(keys))
    assert a is not None and b is not None
    token = a.codec.seal(b'{"task_id": "t1", "after": 7}')
    assert b.codec.unseal(token) == b'{"task_id": "t1", "after": 7}'


def test_rotation_ring_keeps_old_state_valid_and_unshared_keys_fail() -> None:
    old, new = "old-secret-old-secret-old-secret-0001", "new-secret-new-secret-new-secret-0002"
    sealed_before = state_security([old]).codec.seal(b"state")  # type: ignore[union-attr]
    assert state_security([new, old]).codec.unseal(sealed_before) == b"state"  # type: ignore[union-attr]
    with pytest.raises(Exception):  # noqa: B017 (the SDK's own error type for a bad seal)
        state_security([new]).codec.unseal(sealed_before)  # type: ignore[union-attr]
    assert state_security(None) is None and state_security([]) is None
