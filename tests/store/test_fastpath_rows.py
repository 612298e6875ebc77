# pyright: reportPrivateUsage=false
"""store.fastpath's row conversions on SQLite read back what SQLAlchemy wrote and reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.dialects.sqlite import DATETIME

from store.fastdriver import TASKS, SQLite


def test_json_columns_read_as_json_and_empty_ones_are_fresh_objects() -> None:
    d = SQLite(None)
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
    d = SQLite(None)
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


async def test_values_of_reads_the_instance_and_loads_what_is_not_there(tmp_path: Path) -> None:
    """`values_of` is `getattr` for every name: from the instance's dict when the values are
    there (built rows), through SQLAlchemy when one is expired (it is loaded, not missed)."""
    import sqlalchemy as sa
    from sqlalchemy.orm import configure_mappers

    from store.db import Database
    from store.models import Task, build, values_of

    configure_mappers()  # as the app's first session would
    built = build(Task, agent="a", queue="q", prompt="p", parameters={"k": 1})
    names = ["id", "agent", "queue", "prompt", "parameters", "status", "created_at", "finished_at"]
    assert values_of(built, names) == {n: getattr(built, n) for n in names}

    db = Database(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        async with db.tx() as tx:
            await (await tx.session.connection()).run_sync(Task.metadata.create_all)
            task = build(Task, agent="a", queue="q", prompt="before")
            tx.session.add(task)
        async with db.tx() as tx:
            loaded = await tx.session.get(Task, task.id)
            assert loaded is not None
            await tx.execute(sa.update(Task).where(sa.column("id") == task.id).values(prompt="after"))
            tx.session.expire(loaded, ["prompt"])
            assert "prompt" not in vars(loaded)
            got = await tx.session.run_sync(lambda _: values_of(loaded, ["id", "prompt"]))
            assert got == {"id": task.id, "prompt": "after"}
    finally:
        await db.dispose()
