"""The credential rule REST and /mcp share (store/auth.py): the parts that need no server."""

from __future__ import annotations

from store.auth import EMBEDDED_WORKER, OPEN, Principal, bearer_token


def test_bearer_token_reads_the_header_as_the_api_did() -> None:
    assert bearer_token("Bearer ma_x_y") == "ma_x_y"
    assert bearer_token("bearer   ma_x_y  ") == "ma_x_y"  # any case, padding dropped
    assert bearer_token("Bearer ") == ""  # a bearer header with no token: empty, not None
    assert bearer_token("") is None
    assert bearer_token("Basic dXNlcjpwYXNz") is None


def test_scopes_nest_except_worker() -> None:
    viewer = Principal("v", frozenset({"viewer"}))
    operator = Principal("o", frozenset({"operator"}))
    assert OPEN.can("admin") and OPEN.can("worker")
    assert operator.can("viewer") and operator.can("operator") and not operator.can("admin")
    assert viewer.can("viewer") and not viewer.can("operator") and not viewer.can("worker")
    assert EMBEDDED_WORKER.can("worker") and EMBEDDED_WORKER.can("viewer")
    assert not EMBEDDED_WORKER.can("operator")
