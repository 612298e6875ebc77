"""An exchange's completions: one statement on PostgreSQL (store.completions), a statement
each on SQLite; the same outcome, refusal by refusal, on both stores."""

from __future__ import annotations

from typing import Any

from kernel import errors
from store import catalog, events, tasks
from store.db import Database, Tx
from store.hub import Batch
from store.leases import Lease
from store.models import Agent, WorkerQueue

SECRET = "sk-" + "a" * 40


async def _claimed(db: Database, n: int) -> list[tasks.Claimed]:
    async with db.tx() as tx:
        for name in ("q", "other"):
            await catalog.create_queue(tx, WorkerQueue(name=name))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))
        await catalog.create_agent(tx, Agent(name="b", runtime="noop", default_queue="other"))
        for i in range(n):
            await tasks.create_task(tx, tasks.NewTask(prompt=f"p{i}", agent="a"))
        await tasks.create_task(tx, tasks.NewTask(prompt="elsewhere", agent="b"))
    async with db.tx() as tx:
        held = await tasks.claim_tasks(tx, "q", "w", n, 60, {}, touch=False)
        held += await tasks.claim_tasks(tx, "other", "w", 1, 60, {}, touch=False)
    return held


async def test_an_exchanges_completions_apply_each_as_alone(db: Database) -> None:
    """Results, usage, the worker's last events (masked) and the status event in their
    seqs; a stale lease, a task of another queue than the key's, an unknown task and a bad
    event kind refused alone, each with the error a report of its own gets."""
    a, b, c, d, elsewhere = await _claimed(db, 4)
    q = ("q",)  # a key bound to queue q, as the worker's
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    reports = [
        tasks.Report(a.task.id, Lease(a.token, q), result={"out": 1}, usage=usage),
        tasks.Report(
            b.task.id,
            Lease(b.token, q),
            result="two",
            events=[("log", {"line": "done"}), ("log", {"line": SECRET})],
        ),
        tasks.Report(c.task.id, Lease("not-the-token", q), result=None),
        tasks.Report(elsewhere.task.id, Lease(elsewhere.token, q), result=None),
        tasks.Report("no-such-task", Lease("x", q), result=None),
        tasks.Report(d.task.id, Lease(d.token, q), result=None, events=[("status", {"status": "x"})]),
    ]
    published: list[tuple[str, Any]] = []

    async def exchange(tx: Tx) -> list[Any]:
        sent = await tasks.send_reports(tx, reports)
        out = await sent()
        published.extend(tx.notes)
        return out

    done_a, done_b, stale, other_queue, unknown, bad_kind = await db.fast_or_full(exchange)
    assert done_a.status == done_b.status == "completed", (done_a, done_b)
    assert isinstance(stale, errors.StaleLease) and stale.code == "stale_lease"
    assert isinstance(other_queue, errors.Forbidden)
    assert isinstance(unknown, errors.NotFound)
    assert isinstance(bad_kind, errors.Invalid) and bad_kind.code == "reserved_event_kind"

    async with db.read() as s:
        got_a, got_b = await tasks.get_task(s, a.task.id), await tasks.get_task(s, b.task.id)
        for untouched in (c, d, elsewhere):
            assert (await tasks.get_task(s, untouched.task.id)).status == "running"
        log_b = await events.list_after(s, b.task.id, 2)
        log_a = await events.list_after(s, a.task.id, 2)
    assert (got_a.result, got_a.usage, got_a.lease_token_hash) == ({"out": 1}, usage, None)
    assert got_a.finished_at is not None and got_a.phase is None
    assert got_b.result == "two" and got_b.last_seq == 5  # created 1, claimed 2, then 3
    assert [(e.seq, e.kind, e.attempt) for e in log_b] == [(3, "log", 1), (4, "log", 1), (5, "status", 1)]
    assert log_b[0].data == {"line": "done"} and SECRET not in str(log_b[1].data)
    assert log_b[2].data == {"status": "completed", "from": "running"}
    assert [(e.seq, e.kind) for e in log_a] == [(3, "status")]
    # Followers get each task's new events as they are, and the board the change.
    batches = {topic: p for topic, p in published if isinstance(p, Batch)}
    assert [row[1] for row in batches[f"task:{b.task.id}"].rows] == [3, 4, 5]
    assert ("board", a.task.id) in published and ("board", b.task.id) in published


async def test_a_task_reported_twice_in_one_exchange_completes_once(db: Database) -> None:
    """The second report of the same task is refused as a report arriving after it would
    be (the batch is not used for repeated ids: one UPDATE would match the task once)."""
    a, b, *_ = await _claimed(db, 2)

    async def exchange(tx: Tx) -> list[Any]:
        reports = [
            tasks.Report(a.task.id, Lease(a.token, ()), result=1),
            tasks.Report(b.task.id, Lease(b.token, ()), result=2),
            tasks.Report(a.task.id, Lease(a.token, ()), result=3),
        ]
        return await (await tasks.send_reports(tx, reports))()

    first, second, again = await db.fast_or_full(exchange)
    assert first.status == second.status == "completed"
    assert isinstance(again, errors.StaleLease)
    async with db.read() as s:
        assert (await tasks.get_task(s, a.task.id)).result == 1


TRICKY: list[Any] = [
    {"line": 'a "quoted" \\ back\\slash, {braces}, [brackets], a,comma'},
    {"text": "ünïcödé ✓ \u2028 and a NUL-free \t tab", "n": 1.5, "none": None},
    {"nested": {"list": [1, "two", None, {"k": "v"}], "empty": {}}},
]


async def test_values_that_need_quoting_are_stored_as_sent(db: Database) -> None:
    """A report's result and its events, and a worker's events batch, go to PostgreSQL as
    JSON documents (store.completions, fastpath.send_update_task_events): quotes,
    backslashes, braces, commas, unicode and nulls come back exactly as sent."""
    a, b, *_ = await _claimed(db, 2)
    batch = [("log", data) for data in TRICKY]
    last, _ = await db.fast_or_full(lambda tx: events.append(tx, a.task.id, batch, lease=Lease(a.token, ())))

    async def exchange(tx: Tx) -> list[Any]:
        reports = [
            tasks.Report(a.task.id, Lease(a.token, ()), result=TRICKY, events=batch),
            tasks.Report(b.task.id, Lease(b.token, ()), result=None),
        ]
        return await (await tasks.send_reports(tx, reports))()

    done_a, done_b = await db.fast_or_full(exchange)
    assert done_a.status == done_b.status == "completed"
    async with db.read() as s:
        log = await events.list_after(s, a.task.id, 2)
        got_a, got_b = await tasks.get_task(s, a.task.id), await tasks.get_task(s, b.task.id)
    assert last == 2 + len(TRICKY)
    assert [e.data for e in log if e.kind == "log"] == TRICKY * 2
    assert [e.seq for e in log] == list(range(3, 3 + 2 * len(TRICKY) + 1))
    assert got_a.result == TRICKY and got_b.result is None


async def test_a_creations_and_a_claims_json_values_are_stored_as_sent(db: Database) -> None:
    """On PostgreSQL every JSON value goes as its text, of no type, which the column (or a
    `::json` cast in the statement) types: parameters, the status events' data, the audit
    row's details, written in the creation's one statement and the claim's."""
    await _claimed(db, 0)
    params = {"quoted": TRICKY[0]["line"], "nested": TRICKY[2], "n": 1.5, "none": None}
    new = tasks.NewTask(prompt="p", agent="a", parameters=params)
    task = await db.fast_or_full(lambda tx: tasks.create_task(tx, new))
    assert db.fast_fallbacks == {}  # the fast path's statements, not SQLAlchemy's
    (held,) = await db.fast_or_full(lambda tx: tasks.claim_tasks(tx, "q", "w", 1, 60, {}, touch=False))
    async with db.read() as s:
        got = await tasks.get_task(s, task.id)
        log = await events.list_after(s, task.id, 0)
    assert got.parameters == params and held.task.parameters == params
    assert [(e.seq, e.data) for e in log] == [
        (1, {"status": "pending", "from": None}),
        (2, {"status": "running", "from": "pending", "worker_id": "w"}),
    ]
