"""Board counts stop at a cap: a column of a million tasks is shown as "1,000+" without
reading a million rows; smaller columns are exact, and filters apply."""

from __future__ import annotations

from store import tasks
from store.db import Database
from tests.store.test_tasks import new_task, seed


async def test_counts_are_exact_below_the_cap_and_flagged_at_it(db: Database) -> None:
    await seed(db)
    ids = [await new_task(db, f"t{i}") for i in range(9)]
    for tid in ids[:2]:
        async with db.tx() as tx:
            await tasks.cancel(tx, tid)
    async with db.read() as s:
        counts = await tasks.count_by_status_capped(s, cap=5)
        exact = await tasks.count_by_status(s)
        none = await tasks.count_by_status_capped(s, cap=5, agent="nobody")
        by_prompt = await tasks.count_by_status_capped(s, cap=5, q="t8")
    assert counts["pending"] == (5, True)  # 7 pending: "5 or more"
    assert counts["cancelled"] == (2, False)
    assert counts["completed"] == (0, False)
    assert exact["pending"] == 7 and exact["cancelled"] == 2
    assert all(v == (0, False) for v in none.values())
    assert by_prompt["pending"] == (1, False)
