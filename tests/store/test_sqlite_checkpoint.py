"""SQLite's WAL is checkpointed by a thread of its own, never inside a commit on the loop.

With SQLite's automatic checkpoint, the commit that crosses 1,000 WAL pages copies them back
and fsyncs the file while the event loop waits (milliseconds; up to 100 ms on a busy disk):
the dispatch p99 of `make bench` paid for it.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from store.db import Database
from store.sqlite_inline import Checkpointer
from tests.support import wait_for


async def test_the_writer_never_checkpoints_and_the_thread_keeps_the_wal_short(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        async with db.tx() as tx:
            await tx.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        async with db.tx() as tx:
            raw = (await (await tx.session.connection()).get_raw_connection()).driver_connection
            (autocheckpoint,) = raw._conn.execute("PRAGMA wal_autocheckpoint").fetchone()  # pyright: ignore
        assert autocheckpoint == 0  # the commit on the loop leaves checkpoints to the thread

        for _ in range(60):  # ~1,500 pages of WAL: past SQLite's own threshold of 1,000
            async with db.tx() as tx:
                await tx.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), [{"v": "x" * 4000}] * 100)
        checkpointer = db._checkpointer  # pyright: ignore[reportPrivateUsage]
        assert isinstance(checkpointer, Checkpointer)

        def caught_up() -> bool:
            last = checkpointer.last
            return last is not None and last[0] == 0 and last[1] == last[2] and checkpointer._commits == 0  # pyright: ignore[reportPrivateUsage]

        wait_for(caught_up, 10, "the checkpoint thread to copy the whole WAL back")
        async with db.read() as s:
            assert (await s.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 6000
    finally:
        await db.dispose()
    assert checkpointer._thread is not None and not checkpointer._thread.is_alive()  # pyright: ignore[reportPrivateUsage]
