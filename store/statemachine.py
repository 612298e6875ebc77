"""The one place that changes a task's status.

    (new) ──create──▶ pending ──claim──▶ running ──complete──▶ completed
                       ▲  ▲               │ │ └──fail──────────▶ failed
               respond │  │ lease lost /  │ └─cancel ack───────▶ cancelled
                       │  └─hand back ────┤
              requires_input ◀────────────┘ ask / missing parameter
    pending | requires_input ──cancel──▶ cancelled ; any non-terminal ──▶ failed

Every change checks the from→to rule, writes the row and appends the `status` event in the
caller's transaction, and queues the after-commit notifications. Nothing else writes
`tasks.status`. A task created for a worker's parked claim may be written already claimed
(`send_born_claimed`): create and claim at once, with both their events.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from kernel import errors
from store import born, completions, fastpath
from store.db import Tx
from store.events import insert_rows, masked, send_update_and_append
from store.hub import Batch
from store.leases import Lease, refusal
from store.models import TERMINAL, Task, TaskEvent, TaskStatus, from_row, utcnow, values_of

__all__ = [
    "ALLOWED",
    "create",
    "send_born_claimed",
    "send_claim",
    "send_completions",
    "send_transition",
    "transition",
    "transition_many",
]

S = TaskStatus
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.pending: frozenset({S.running, S.cancelled, S.failed}),
    S.running: frozenset({S.completed, S.failed, S.requires_input, S.pending, S.cancelled}),
    S.requires_input: frozenset({S.pending, S.cancelled, S.failed}),
    S.completed: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
}

# What a task may come from, for each status, and each status's value as a plain str:
# computed per transition they were ~12 Python calls of a worker's report (an enum's
# `.value` is a property).
_FROM: dict[TaskStatus, frozenset[TaskStatus]] = {
    to: frozenset(s for s, tos in ALLOWED.items() if to in tos) for to in TaskStatus
}
_VALUE: dict[TaskStatus, str] = {s: s.value for s in TaskStatus}
_RUNNING = frozenset({S.running})

_tasks = Task.__table__
_events = TaskEvent.__table__


def _notify_status(tx: Tx, task_id: str, queue: str, to: TaskStatus) -> None:
    tx.notify("board", task_id)
    if to is S.pending:
        tx.notify(f"queue:{queue}", task_id)


async def create(tx: Tx, task: Task) -> Task:
    """Insert a new task as `pending` with its first `status` event (seq 1). With a
    claimant on the transaction (SQLite, store/born.py), inserted claimed for it instead
    when it can be: `task` itself stays as created, the claimant gets the claimed one."""
    task.status = S.pending.value
    task.last_seq = 1
    first: dict[str, Any] = {"status": "pending", "from": None}
    claimant: born.Claimant | None = tx.claimant
    claimed = None
    if claimant is not None and task.needs is None:
        claimed = await _born_sqlite(tx, task, first, claimant)
    if claimed is None:
        # With its first event (one statement on PostgreSQL: fastpath.insert_task).
        await fastpath.insert_task(tx, values_of(task, fastpath.COLS), first)
    tx.notify(f"task:{task.id}", "1")
    _notify_status(tx, task.id, task.queue, S.pending)
    if claimed is not None:
        claimed()  # its notes after the creation's, as on PostgreSQL
    return task


async def _born_sqlite(
    tx: Tx, task: Task, first: dict[str, Any], claimant: born.Claimant
) -> Callable[[], None] | None:
    """`task` inserted claimed for the claimant's worker, as send_born_claimed writes it on
    PostgreSQL: what publishes the claim's notes. None, and nothing written, when there is
    no claim to take or a task is pending before it."""
    got = claimant.take(task.queue)
    if got is None:
        return None
    worker_id, token_hash, lease_seconds = got
    now = utcnow()
    values = _claim_values(worker_id, token_hash, now, lease_seconds)
    values.update(attempt=task.attempt + 1, last_seq=task.last_seq + 1, started_at=now)
    row = {**values_of(task, fastpath.COLS), **values}
    data = _claim_event(worker_id)
    if not await born.insert_claimed(tx, row, first, data, now, S.pending.value):
        claimant.pending_first = True
        return None
    claimant.claimed = from_row(Task, row)
    return lambda: _notify_claimed(tx, row, data, now)


async def transition(
    tx: Tx,
    task_id: str,
    to: TaskStatus,
    *,
    expect: frozenset[TaskStatus] | None = None,
    lease: Lease | None = None,
    values: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    extra_events: list[tuple[str, dict[str, Any]]] | None = None,
) -> Task:
    """Move a task to `to`, or raise without changing anything.

    `expect` narrows the allowed from-states; `lease` fences a worker call (the task must be
    running under that lease token, in the WHERE of the UPDATE itself). `values` are further columns to set; `event` extra data for
    the `status` event; `extra_events` are appended just before it (e.g. the worker's last
    batch of output on completion).
    """
    done = await send_transition(
        tx,
        task_id,
        to,
        expect=expect,
        lease=lease,
        values=values,
        event=event,
        extra_events=extra_events,
    )
    return await done()


def _moved(to: TaskStatus, now: datetime) -> dict[str, Any]:
    """The columns any transition to `to` (but a claim) sets, besides its own values."""
    vals: dict[str, Any] = {"status": _VALUE[to], "updated_at": now}
    vals["lease_token_hash"] = None  # only a claim makes a task running, with a new token
    if to in TERMINAL:
        vals.update(finished_at=now, lease_expires_at=None, phase=None)
    if to in (S.pending, S.requires_input):
        vals.update(worker_id=None, lease_expires_at=None, phase=None)
    return vals


async def send_transition(
    tx: Tx,
    task_id: str,
    to: TaskStatus,
    *,
    expect: frozenset[TaskStatus] | None = None,
    lease: Lease | None = None,
    values: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    extra_events: list[tuple[str, dict[str, Any]]] | None = None,
) -> Callable[[], Awaitable[Task]]:
    """`transition`, sent: await what it returns for the task after, or the refusal. A
    worker's fenced report is one statement whose answer is read then, so the reports of
    an exchange and its claim share a round trip (fastpath.send_update_task_events); any
    other change is made before this returns."""
    allowed_from = _FROM[to]
    if lease is not None:
        allowed_from &= _RUNNING
    if expect is not None:
        allowed_from &= expect
    if len(allowed_from) == 1:
        # The hot paths (a worker completing, failing, asking) know the from-state, so the
        # check and the write are one conditional UPDATE; a refusal is explained after.
        (current,) = allowed_from
    else:
        current = await _current(tx, task_id, lease)
        if current not in allowed_from:
            raise _refusal(task_id, to, current)
    now = utcnow()
    batch = list(extra_events or [])
    to_value, from_value = _VALUE[to], _VALUE[current]
    batch.append(("status", {"status": to_value, "from": from_value, **(event or {})}))
    vals = _moved(to, now)
    vals.update(values or {})

    async def settled(row: Mapping[Any, Any] | None) -> Task:
        if row is None:
            now_status = await _current(tx, task_id, lease)
            raise _refusal(task_id, to, now_status)
        _notify_status(tx, task_id, row["queue"], to)
        return from_row(Task, row)

    if lease is not None:
        # A worker's report (the hot path): plain values, fenced by the lease, and the
        # events (one statement on PostgreSQL).
        sent = await send_update_and_append(tx, task_id, vals, batch, now, status=from_value, lease=lease)

        async def fenced() -> Task:
            return await settled(await sent())

        return fenced
    # Built here only: a SQLAlchemy expression costs more than the fenced UPDATE's Python.
    vals["last_seq"] = _tasks.c.last_seq + len(batch)
    stmt = sa.update(_tasks).where(_tasks.c.id == task_id, _tasks.c.status == current.value)
    row = (await tx.execute(stmt.values(**vals).returning(*_tasks.c))).mappings().first()
    if row is not None:
        await insert_rows(tx, task_id, row["last_seq"], row["attempt"], now, batch)
    task = await settled(row)

    async def made() -> Task:
        return task

    return made


async def send_completions(
    tx: Tx, items: Sequence[tuple[str, Lease, Any, dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]]
) -> list[Callable[[], Awaitable[Task]]]:
    """`send_transition(task, completed, lease=..., values={result, usage?},
    extra_events=...)` of each (task id, lease, result, usage, extra events) of `items`, as
    ONE statement on PostgreSQL (store.completions): what each awaits, in order, for the
    task after or its refusal, as send_transition's. Ids distinct; the leases' queues the
    same (one worker key's)."""
    now = utcnow()
    to_value, from_value = _VALUE[S.completed], _VALUE[S.running]
    vals = _moved(S.completed, now)
    status_event = ("status", {"status": to_value, "from": from_value})
    batch = [
        (t, lease.hash, result, usage, masked([*extra, status_event]))
        for t, lease, result, usage, extra in items
    ]
    queues = items[0][1].queues if items else ()
    sent = await completions.send_completions(tx, batch, vals, now, status=from_value, queues=queues)
    found: completions.Found | None = None

    def settle(task_id: str, lease: Lease) -> Callable[[], Awaitable[Task]]:
        async def fenced() -> Task:
            nonlocal found
            if found is None:
                found = await sent()
            hit = found.get(task_id)
            if hit is None:
                raise _refusal(task_id, S.completed, await _current(tx, task_id, lease))
            row, rows = hit
            tx.notify(f"task:{task_id}", Batch(rows))
            _notify_status(tx, task_id, row["queue"], S.completed)
            return from_row(Task, row)

        return fenced

    return [settle(t, lease) for t, lease, *_ in items]


async def transition_many(
    tx: Tx,
    task_ids: list[str],
    current: TaskStatus,
    to: TaskStatus,
    *,
    values: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
) -> list[str]:
    """Move every task of `task_ids` that is still `current` to `to`; returns the moved ids.

    The set form of `transition` for people's bulk actions (a cancel cascading through
    thousands of delegated children): one UPDATE and one INSERT of `status` events per
    chunk instead of two statements per task. Tasks no longer `current` are left alone.
    """
    if to not in ALLOWED[current]:
        raise _refusal(task_ids[0] if task_ids else "?", to, current)
    moved: list[str] = []
    now = utcnow()
    data = {"status": to.value, "from": current.value, **(event or {})}
    vals: dict[str, Any] = {"status": to.value, "updated_at": now, "last_seq": _tasks.c.last_seq + 1}
    if to in TERMINAL:
        vals.update(finished_at=now, lease_expires_at=None, phase=None)
    vals.update(values or {})
    for i in range(0, len(task_ids), _CHUNK):
        chunk = task_ids[i : i + _CHUNK]
        stmt = (
            sa.update(_tasks)
            .where(_tasks.c.id.in_(chunk), _tasks.c.status == current.value)
            .values(**vals)
            .returning(_tasks.c.id, _tasks.c.last_seq, _tasks.c.attempt, _tasks.c.queue)
        )
        rows = (await tx.execute(stmt)).all()
        if not rows:
            continue
        await tx.execute(
            sa.insert(_events),
            [
                {
                    "task_id": r.id,
                    "seq": r.last_seq,
                    "kind": "status",
                    "data": data,
                    "attempt": r.attempt,
                    "created_at": now,
                }
                for r in rows
            ],
        )
        for r in rows:
            tx.notify(f"task:{r.id}", str(r.last_seq))
            _notify_status(tx, r.id, r.queue, to)
            moved.append(r.id)
    return moved


# Bound parameters per statement stay far below every driver's limit (SQLite 32,766,
# PostgreSQL 65,535).
_CHUNK = 500


async def _current(tx: Tx, task_id: str, lease: Lease | None) -> TaskStatus:
    """The task's status (row locked), or NotFound / StaleLease / Forbidden."""
    if tx.committed:  # asked after a commit (Tx.after): why, read in a transaction of its own
        async with tx.db.tx() as fresh:
            return await _current(fresh, task_id, lease)
    row = (
        await tx.execute(
            sa.select(_tasks.c.status, _tasks.c.lease_token_hash, _tasks.c.queue)
            .where(_tasks.c.id == task_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise errors.NotFound(f"task {task_id} not found", code="task_not_found")
    current = S(row.status)
    if lease is not None and (
        row.lease_token_hash != lease.hash
        or current is not S.running
        or (lease.queues and row.queue not in lease.queues)
    ):
        raise await refusal(tx, task_id, lease)
    return current


def _refusal(task_id: str, to: TaskStatus, current: TaskStatus) -> errors.InvalidTransition:
    return errors.InvalidTransition(
        f"task {task_id} is {current.value}; it cannot become {to.value}", status_now=current.value
    )


async def send_claim(
    tx: Tx,
    queue: str,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    token_hash: str,
    now: datetime | None = None,
    needs: tuple[str, ...] | None = None,
) -> Callable[[], Awaitable[tuple[list[Task], dict[str, dict[str, Any]]]]]:
    """Atomically move up to `limit` pending tasks of `queue` to running for `worker_id`.
    Sent: await what this returns for them and their agents' rows by name (read in the
    same statement; on PostgreSQL perhaps after the commit, see Tx.after).

    One statement picks and updates the rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
    concurrent claimers never wait on or double-claim a row; SQLite's single writer does the
    same). Each claimed task gets attempt+1, `token_hash` as its lease (store.leases) and a
    `status` event. The tasks of one claim share its token: they go to one worker in one
    answer, and any later claim of one of them replaces its hash. `needs`: see fastpath.send_claim.
    """
    now = now or utcnow()
    values = _claim_values(worker_id, token_hash, now, lease_seconds)
    if needs:  # a task that waited for a capable worker waits no more (store/prereqs.py)
        values["waiting_for"] = None
    # The status event's seq is taken in the same UPDATE (last_seq + 1), so a claim of N
    # tasks is one statement on PostgreSQL, two on SQLite (one multi-row INSERT of their
    # status events).
    data = _claim_event(worker_id)
    take = await fastpath.send_claim(tx, queue, limit, values, now, needs, event=data)

    async def read() -> tuple[list[Task], dict[str, dict[str, Any]]]:
        rows, agents = await take()
        rows.sort(key=lambda r: r["id"])
        for r in rows:
            _notify_claimed(tx, r, data, now)
        return [from_row(Task, r) for r in rows], agents

    return read


def _claim_values(worker_id: str, token_hash: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    """The columns a claim sets (besides attempt, last_seq and started_at, which it moves)."""
    return {
        "status": S.running.value,
        "phase": "planning",
        "lease_token_hash": token_hash,
        "worker_id": worker_id,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }


def _claim_event(worker_id: str) -> dict[str, Any]:
    return {"status": "running", "from": "pending", "worker_id": worker_id}


def _notify_claimed(tx: Tx, row: Mapping[str, Any], data: dict[str, Any], now: datetime) -> None:
    # With its status event's row (a Batch, which other replicas get in the NOTIFY too):
    # the task's followers frame it as it is instead of reading the log back, twice (the
    # event, then has it ended?), while the worker is starting the task.
    task_id = row["id"]
    tx.notify(f"task:{task_id}", Batch([(task_id, row["last_seq"], "status", data, row["attempt"], now)]))
    tx.notify("board", task_id)


class Born(NamedTuple):
    """A creation sent as claimed (send_born_claimed)."""

    # The task as it is once claimed, for what may be built before the answer (the same
    # object `read` returns when it was).
    task: Callable[[], Task]
    # The claimed task and its agent's row; None when the statement found another task
    # pending, and inserted this one pending.
    read: Callable[[], Awaitable[tuple[Task, dict[str, Any] | None] | None]]


async def send_born_claimed(
    tx: Tx, task: Task, worker_id: str, token_hash: str, lease_seconds: float
) -> Born | None:
    """`task`, just created (`create`) and not sent yet, written as claimed by `worker_id`
    instead: the row a claim of it would leave and its `running` status event, in the
    creation's own statement (store/born.py). None when it cannot be: a task that needs
    something (the worker's capabilities decide), or a creation already sent (SQLite, a
    full transaction). Sent: await its `read` for the claimed task and its agent's row, or
    None when the statement found another task pending on the queue, which a claim takes
    first: `task` was then inserted pending, as `create` does."""
    if task.needs is not None:
        return None
    now = utcnow()
    values = _claim_values(worker_id, token_hash, now, lease_seconds)
    values.update(attempt=task.attempt + 1, last_seq=task.last_seq + 1, started_at=now)
    data = _claim_event(worker_id)
    take = await born.send(tx, task.queue, task.agent, values, data, now, (S.pending.value, S.running.value))
    if take is None:
        return None

    row = {**values_of(task, fastpath.COLS), **values}
    claimed_task = functools.cache(lambda: from_row(Task, row))

    async def read() -> tuple[Task, dict[str, Any] | None] | None:
        claimed, agent = await take()
        if not claimed:
            return None
        _notify_claimed(tx, row, data, now)
        return claimed_task(), agent

    return Born(claimed_task, read)
