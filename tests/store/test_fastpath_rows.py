# pyright: reportPrivateUsage=false
"""store.fastpath's row conversions on SQLite read back what SQLAlchemy wrote and reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy.dialects.sqlite import DATETIME

from store.fastpath import TASKS, _SQLite


def test_json_columns_read_as_json_and_empty_ones_are_fresh_objects() -> None:
    d = _SQLite(None)
    texts = {name: "null" for name in TASKS.names}
    json_cols = sorted(TASKS.json)
    samples = ["{}", "[]", "null", '{"a": [1, {"b": null}]}', '"text"', "3"]
    for i, col in enumerate(json_cols):
        texts[col] = samples[i % len(samples)]
    for col in TASKS.time:
        texts[col] = None  # type: ignore[assignment]
    row = [texts[n] for n in TASKS.names]
    first, second = d.load(row), d.load(row)
    for i, col in enumerate(json_cols):
        assert first[col] == json.loads(samples[i % len(samples)])
        if isinstance(first[col], dict | list):
            assert first[col] is not second[col]  # a caller may change its copy


def test_timestamps_are_written_in_sqlalchemys_own_format() -> None:
    d = _SQLite(None)
    bind = DATETIME().bind_processor(None)  # pyright: ignore[reportArgumentType]
    assert bind is not None
    for value in (
        datetime.now(UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=timezone(timedelta(hours=2))),  # to UTC
        datetime(1, 1, 1, tzinfo=UTC),
    ):
        assert d.time(value) == bind(value.astimezone(UTC).replace(tzinfo=None))
    assert d.time(None) is None
