"""Agent prerequisites: what a worker must have to run an agent, and who has it.

An agent declares `requires` (`bins` on PATH, `env` variable names, `secrets` by name,
`mcp` server names, an `environment` label). When a task is made, they become its `needs`:
a canonical JSON list of tokens (`["bin:kubectl","env:KUBECONFIG"]`), None when the agent
requires nothing (the common case). A `secrets` entry of kind `env` needs that variable on
the worker; a `stored` one the control plane holds, so it needs nothing.

A worker reports what it has (worker/capabilities.py) with its claims, once and whenever it
changes, and names it by a digest in between. The claim then takes a task only if every
token is met; the `environment` token is met by the worker's own label, or by its queue's
`environment` when the worker has none. A worker that reports nothing (an older one) claims
as before: anything. When no live worker of the queue meets a pending task's needs, the
task says why in `waiting_for`, and the board shows it.

Cost: the claim asks the database which needs the queue's unfinished tasks have only when
the queue may hold such a task (the `needs:<queue>` hub topic moved since the last look,
which came back empty, or that look is older than `RECHECK` seconds); otherwise the claim
is the one statement it always was (see `plan`).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from store import fastrows
from store.db import Database, Tx
from store.models import Agent, Task, TaskStatus, Worker, WorkerQueue, utcnow
from store.secret_models import Secret

__all__ = [
    "Caps",
    "Fit",
    "describe",
    "fits",
    "missing",
    "needs_for",
    "parse",
    "plan",
    "signature",
    "topic",
    "worker_caps",
]

# A queue's "no task needs anything" answer is trusted this long without a new look (a
# NOTIFY lost while a replica reconnected would otherwise hide a new task from it).
RECHECK = 5.0
_UNFINISHED = (TaskStatus.pending.value, TaskStatus.running.value, TaskStatus.requires_input.value)
_tasks = Task.__table__


def topic(queue: str) -> str:
    """The hub topic published when a task with needs is made on `queue`."""
    return f"needs:{queue}"


# ---- tokens -------------------------------------------------------------------------------


def signature(tokens: Iterable[str]) -> str | None:
    """The canonical text of a set of tokens (the `tasks.needs` value); None for none."""
    unique = sorted(set(tokens))
    return json.dumps(unique, separators=(",", ":")) if unique else None


def parse(needs: str | None) -> list[str]:
    if not needs:
        return []
    loaded: Any = json.loads(needs)
    return [str(t) for t in cast("list[Any]", loaded)] if isinstance(loaded, list) else []


def describe(token: str) -> str:
    """A token as a person reads it: `kubectl`, `KUBECONFIG`, MCP server `github`..."""
    kind, _, name = token.partition(":")
    if kind == "mcp":
        return f"MCP server `{name}`"
    if kind == "environment":
        return f"environment `{name}`"
    return f"`{name}`"


def tokens_of(requires: Mapping[str, Any], secret_env: Mapping[str, str | None]) -> list[str]:
    """The tokens of an agent's `requires`; `secret_env` maps each secret it names to the
    variable of an `env` secret (None for a stored one, which the control plane holds)."""

    def names(key: str) -> list[str]:
        return [str(n) for n in cast("list[Any]", requires.get(key) or [])]

    out = [f"bin:{b}" for b in names("bins")]
    out += [f"env:{e}" for e in names("env")]
    out += [f"env:{v}" for s in names("secrets") if (v := secret_env.get(s))]
    out += [f"mcp:{m}" for m in names("mcp")]
    if requires.get("environment"):
        out.append(f"environment:{requires['environment']}")
    return out


async def needs_for(
    session: AsyncSession | Callable[[], AsyncSession], requires: Mapping[str, Any] | None
) -> str | None:
    """A new task's `needs` from its agent's `requires` (no query when it names no secret).
    `session` may be a getter, asked only then: a task created on the hot path
    (Database.fast_tx) has no session to give unless a secret must be looked up."""
    if not requires:
        return None
    names = list(requires.get("secrets") or [])
    secret_env: dict[str, str | None] = {}
    if names:
        if callable(session):
            session = session()
        rows = await session.execute(
            sa.select(col(Secret.name), col(Secret.kind), col(Secret.env)).where(col(Secret.name).in_(names))
        )
        secret_env = {r.name: (r.env if r.kind == "env" else None) for r in rows.all()}
    return signature(tokens_of(requires, secret_env))


# ---- what a worker has --------------------------------------------------------------------


@dataclass(frozen=True)
class Caps:
    """A worker's capabilities as sets (None `environment`: the queue's)."""

    digest: str
    bins: frozenset[str] = frozenset()
    env: frozenset[str] = frozenset()
    mcp: frozenset[str] = frozenset()
    environment: str | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Caps:
        data = data or {}
        return cls(
            digest=str(data.get("digest") or ""),
            bins=frozenset(data.get("bins") or ()),
            env=frozenset(data.get("env") or ()),
            mcp=frozenset(data.get("mcp") or ()),
            environment=data.get("environment") or None,
        )


def missing(tokens: Iterable[str], caps: Caps | None, queue_env: str | None = None) -> list[str]:
    """The tokens `caps` does not meet; none for a worker that reports nothing (None)."""
    if caps is None:
        return []
    out: list[str] = []
    for t in tokens:
        kind, _, name = t.partition(":")
        have = {
            "bin": name in caps.bins,
            "env": name in caps.env,
            "mcp": name in caps.mcp,
            "environment": (caps.environment or queue_env) == name,
        }.get(kind, False)
        if not have:
            out.append(t)
    return out


@dataclass
class _State:
    """Per database, in this process: the last empty look per queue, workers' capabilities."""

    clear: dict[str, tuple[int, float]] = field(default_factory=dict[str, tuple[int, float]])
    caps: dict[str, Caps] = field(default_factory=dict[str, Caps])


_states: weakref.WeakKeyDictionary[Database, _State] = weakref.WeakKeyDictionary()
_MAX_CACHED = 10_000


def _state(db: Database) -> _State:
    st = _states.get(db)
    if st is None:
        st = _states[db] = _State()
    return st


async def worker_caps(
    tx: Tx, worker_id: str, digest: str | None, sent: Mapping[str, Any] | None
) -> Caps | None:
    """What the claiming worker has: `sent` now, else the last it sent (by `digest`); None
    for a worker that reports nothing. A digest the control plane does not know (the row
    went away) counts as having nothing, until the worker sends its capabilities again."""
    st = _state(tx.db)
    if sent is not None:
        caps = Caps.of(sent)
    elif digest is None:
        return None
    else:
        cached = st.caps.get(worker_id)
        if cached is not None and cached.digest == digest:
            return cached
        stored = await tx.session.scalar(
            sa.select(col(Worker.capabilities)).where(col(Worker.id) == worker_id)
        )
        # Remembered as "nothing" under that digest, so the next claims do not read again.
        caps = Caps.of(stored) if stored and stored.get("digest") == digest else Caps(digest=digest)
    if len(st.caps) >= _MAX_CACHED:
        st.caps.clear()
    st.caps[worker_id] = caps
    return caps


# ---- the claim ----------------------------------------------------------------------------


async def plan(tx: Tx, queue: str, worker_id: str, caps: Caps, now: datetime) -> tuple[str, ...] | None:
    """The `needs` values of `queue`'s pending tasks that `caps` meets (the claim takes those
    and the tasks that need nothing). For the others it records on the waiting tasks why no
    live worker takes them.

    None when the queue holds no task with needs: the claim is then today's statement. On
    SQLite that is certain (one process; a task's notes are published before the next
    transaction starts); on PostgreSQL another replica's new task reaches this one's hub a
    moment after its commit, so there the claim still says `needs IS NULL` (())."""
    st = _state(tx.db)
    version = tx.db.hub.version(topic(queue))
    last = st.clear.get(queue)
    if last is not None and last[0] == version and time.monotonic() - last[1] < RECHECK:
        return None if tx.db.is_sqlite else ()
    # Through the transaction's driver, not the ORM session: a claim in a fast transaction
    # (an exchange, a hand-off) asks this every RECHECK seconds, and asking for the session
    # ran the whole claim again in a full transaction.
    rows = await fastrows.needs_on_queue(tx, queue, _UNFINISHED)
    if not rows:
        st.clear[queue] = (version, time.monotonic())
        return None if tx.db.is_sqlite else ()
    st.clear.pop(queue, None)
    pending = {needs for needs, status in rows if status == TaskStatus.pending.value}
    if not pending:
        return ()
    queue_env = await _queue_env(tx.session, queue, pending)
    met = tuple(sorted(n for n in pending if not missing(parse(n), caps, queue_env)))
    unmet = pending.difference(met)
    if unmet:
        await _explain(tx, queue, worker_id, caps, unmet, queue_env, now)
    return met


async def _queue_env(session: AsyncSession, queue: str, needs: Iterable[str]) -> str | None:
    if not any("environment:" in n for n in needs):
        return None
    return await session.scalar(select(WorkerQueue.environment).where(WorkerQueue.name == queue))


async def _explain(
    tx: Tx, queue: str, worker_id: str, caps: Caps, unmet: set[str], queue_env: str | None, now: datetime
) -> None:
    """Set `waiting_for` on the pending tasks of each unmet `needs`: what the closest live
    worker lacks, or nothing when some live worker (busy now) meets them."""
    from store.catalog import live_since

    rows = await tx.execute(
        sa.select(col(Worker.id), col(Worker.capabilities)).where(
            col(Worker.queue) == queue, col(Worker.last_heartbeat_at) >= live_since(now)
        )
    )
    others = [None if c is None else Caps.of(c) for i, c in rows.all() if i != worker_id]
    for needs in sorted(unmet):
        tokens = parse(needs)
        gaps = [missing(tokens, c, queue_env) for c in [caps, *others]]
        closest = min(gaps, key=len)
        text = waiting_text(queue, closest) if closest else None
        await _set_waiting(tx, queue, needs, text)


def waiting_text(queue: str, tokens: Sequence[str]) -> str:
    return f"waiting: no worker on `{queue}` has {', '.join(describe(t) for t in tokens)}"


async def _set_waiting(tx: Tx, queue: str, needs: str, text: str | None) -> None:
    changed = (
        _tasks.c.waiting_for.is_not(None) if text is None else _tasks.c.waiting_for.is_distinct_from(text)
    )
    stmt = (
        sa.update(_tasks)
        .where(
            _tasks.c.queue == queue,
            _tasks.c.status == TaskStatus.pending.value,
            _tasks.c.needs == needs,
            changed,
        )
        .values(waiting_for=text, updated_at=utcnow())
        .returning(_tasks.c.id)
    )
    for (task_id,) in (await tx.execute(stmt)).all():
        tx.notify("board", task_id)


# ---- who can run what ---------------------------------------------------------------------


@dataclass
class Fit:
    """Whether `queue`'s live workers can run `agent`: `workers` that can, else what the
    closest one lacks (`missing`, as tokens)."""

    agent: str
    queue: str
    live_workers: int
    workers: list[str]
    missing: list[str]


async def fits(
    session: AsyncSession, agents: Sequence[Agent], now: datetime, *, everyone: bool = False
) -> list[Fit]:
    """For each agent with requirements (every agent with `everyone`) and each queue with
    live workers: who can run it."""
    wanted = [a for a in agents if a.requires or everyone]
    if not wanted:
        return []
    from store.catalog import live_since

    workers = (
        await session.execute(select(Worker).where(col(Worker.last_heartbeat_at) >= live_since(now)))
    ).scalars()
    by_queue: dict[str, list[Worker]] = {}
    for w in workers:
        by_queue.setdefault(w.queue, []).append(w)
    rows = await session.execute(sa.select(col(WorkerQueue.name), col(WorkerQueue.environment)))
    envs: dict[str, str] = {name: env for name, env in rows.all()}
    out: list[Fit] = []
    for agent in wanted:
        tokens = parse(await needs_for(session, agent.requires))
        for queue in sorted(by_queue):
            live = by_queue[queue]
            gaps = {w.id: missing(tokens, _caps(w), envs.get(queue)) for w in live}
            able = sorted(i for i, g in gaps.items() if not g)
            closest = [] if able else min(gaps.values(), key=len)
            out.append(Fit(agent.name, queue, len(live), able, closest))
    return out


def _caps(w: Worker) -> Caps | None:
    return None if w.capabilities is None else Caps.of(w.capabilities)
