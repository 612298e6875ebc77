"""A streaming worker's post: the events of many running tasks, in a few statements.

`POST /worker-queues/{queue}/events` carries, every ~50 ms, a few events for each of the
worker's running tasks. Appended one task at a time that is an UPDATE (the seqs, fenced by
the lease) and an INSERT per task (one statement with a WITH on PostgreSQL): profiled under
`make bench-stream` on SQLite, a third of the control plane's time. Here the whole post is
one UPDATE for every task's seqs (store.fastpath.bump_running) and one INSERT of every event
(in chunks on PostgreSQL); what each task gets back, or why it was refused, is what
`store.work.worker_events` gives one at a time, which a post of one task still takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernel import errors
from kernel.errors import MetaAgentError
from store import fastpath
from store.db import Tx
from store.events import masked
from store.hub import Batch
from store.leases import Lease, refusal
from store.models import utcnow
from store.work import WorkerEvents, checked_batch, worker_events

__all__ = ["Item", "worker_events_many"]

# (task id, the worker's lease on it, its events, its new phase or None)
Item = tuple[str, Lease, WorkerEvents, str | None]
Result = tuple[int, bool] | MetaAgentError  # (last_seq, cancel_requested), or the refusal


async def worker_events_many(tx: Tx, items: Sequence[Item]) -> list[Result]:
    """`worker_events` for every item, each applied or refused on its own, in order."""
    ids = [i[0] for i in items]
    one_scope = len({i[1].queues for i in items}) <= 1
    if len(items) < 2 or len(set(ids)) != len(ids) or not one_scope:
        return [await _one(tx, *item) for item in items]
    out: list[Result | None] = [None] * len(items)
    todo: list[tuple[int, list[tuple[str, dict[str, Any]]]]] = []
    for n, (_, _, events, phase) in enumerate(items):
        try:
            batch = checked_batch(events, phase)
        except MetaAgentError as exc:
            out[n] = exc
            continue
        if batch:
            todo.append((n, batch))
        else:  # as store.events.append says it
            out[n] = errors.Invalid("no events to append", code="empty_batch")
    if todo:
        now = utcnow()
        moved = await fastpath.bump_running(
            tx,
            [(items[n][0], len(batch), items[n][1].hash, items[n][3] or None) for n, batch in todo],
            now,
            items[0][1].queues,
        )
        rows: list[fastpath.EventRow] = []
        for n, batch in todo:
            task_id, held, _, phase = items[n]
            got = moved.get(task_id)
            if got is None:  # not running under this lease (or gone): why, as one at a time
                out[n] = await refusal(tx, task_id, held)
                continue
            last, attempt, cancel_requested = got
            mine = fastpath.event_rows(task_id, last, attempt, now, masked(batch))  # as insert_rows
            rows.extend(mine)
            tx.notify(f"task:{task_id}", Batch(mine))
            if phase:
                tx.notify("board", task_id)
            out[n] = (last, cancel_requested)
        if rows:
            await fastpath.insert_events(tx, rows)
    done = [r for r in out if r is not None]
    assert len(done) == len(items)  # every item applied or refused above
    return done


async def _one(tx: Tx, task_id: str, held: Lease, events: WorkerEvents, phase: str | None) -> Result:
    try:  # a refusal is raised before the fenced UPDATE or by it: it wrote nothing
        return await worker_events(tx, task_id, held, events, phase=phase)
    except MetaAgentError as exc:
        return exc
