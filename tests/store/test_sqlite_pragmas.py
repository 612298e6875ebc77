"""Every SQLite connection of a Database keeps temporary b-trees in memory.

With SQLite's default (`temp_store=FILE`), a statement that needs a temporary b-tree (the
claim's `id IN (SELECT ...)` list, an UPDATE's RETURNING rows, a savepoint's statement
journal) opens a temporary file for it: measured on the claim UPDATE, ~100 µs instead of
~20 in about half the runs. Both connections the store writes through must say MEMORY.
"""

from __future__ import annotations

from pathlib import Path

from store.db import Database

MEMORY = 2  # PRAGMA temp_store: 0 default (a file here), 1 file, 2 memory


async def test_the_pool_and_the_fast_writer_keep_temporary_btrees_in_memory(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    try:
        async with db.tx() as tx:
            raw = (await (await tx.session.connection()).get_raw_connection()).driver_connection
            (pool_store,) = raw._conn.execute("PRAGMA temp_store").fetchone()  # pyright: ignore
        async with db.fast_tx() as tx:
            (fast_store,) = tx.raw._conn.execute("PRAGMA temp_store").fetchone()  # pyright: ignore
        assert (pool_store, fast_store) == (MEMORY, MEMORY)
    finally:
        await db.dispose()
