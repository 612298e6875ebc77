# pyright: reportPrivateUsage=false
"""Task ids: UUIDv7 strings, in uuid's own canonical form, ordered by creation time."""

from __future__ import annotations

import uuid

import pytest

from store import ids


def test_ids_are_canonical_uuid7_strings_that_sort_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    made = [ids.new_id() for _ in range(2000)]
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12: what uuid itself prints
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len(set(made)) == len(made)
    # The first 48 bits are the milliseconds: later ids never sort before earlier ones,
    # even when the wall clock steps back (NTP).
    monkeypatch.setattr(ids, "_last", ids._last)  # restored after: other tests' ids stay ordered
    now = ids.time.time_ns()
    monkeypatch.setattr(ids.time, "time_ns", lambda: now)
    first = ids.new_id()
    monkeypatch.setattr(ids.time, "time_ns", lambda: now - 5_000_000_000)
    later = ids.new_id()
    assert later[:13] == first[:13] and int(uuid.UUID(first)) >> 80 == now // 1_000_000
    monkeypatch.setattr(ids.time, "time_ns", lambda: now + 1_000_000)
    assert ids.new_id()[:13] > first[:13]  # and move on with the clock


def test_ids_of_one_millisecond_sort_in_the_order_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim takes its queue's oldest task first, by id: tasks created in the same
    millisecond must sort as they were created (they sorted at random)."""
    monkeypatch.setattr(ids, "_last", ids._last)
    now = ids.time.time_ns() + 10_000_000
    monkeypatch.setattr(ids.time, "time_ns", lambda: now)
    made = [ids.new_id() for _ in range(1000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {m[:13] for m in made} == {made[0][:13]}  # all of that millisecond
    for text in made:
        assert uuid.UUID(text).version == 7 and uuid.UUID(text).variant == uuid.RFC_4122
    # The random bits run out (after 2**62 ids in one millisecond): the next millisecond.
    monkeypatch.setattr(ids, "_last", int(uuid.UUID(made[-1])) | ((1 << 62) - 1))
    after = ids.new_id()
    assert int(uuid.UUID(after)) >> 80 == now // 1_000_000 + 1
    assert uuid.UUID(after).variant == uuid.RFC_4122
