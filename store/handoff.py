"""A new task handed to a worker's parked claim in the transaction that creates it.

An idle worker long-polls its queue (`claim`, or an `exchange` without reports). Without a
hand-off, a task created meanwhile is committed, the claim is woken, and it claims in a
transaction of its own: a second commit, a second round of statements and a few turns of
the event loop between the client's call and the worker's answer (about a third of the
dispatch time on SQLite, measured under issue #15). Instead, the creating request takes
the oldest claim parked on the task's queue in this process and runs that claim in its own
transaction, after the task's insert: one commit for both. The claim is exactly the one the
worker's request would have run (its worker, limit, lease and capabilities), so it may take
an older pending task first, or none if the worker lacks what the task needs.

The worker is answered first: the creator waits until the claimer has left (`Parked.left`,
set as it stops waiting, its answer written in that same turn of the event loop) before its
own answer goes. Else the creator, running on at once, always answered before the claimer
woke, and the worker, whose task this is, heard of it a third of a millisecond later (the
creator's response, then a few turns of the loop; measured under issue #15). The wait is
bounded (`ANSWER_FIRST`): a claimer stuck for whatever reason never holds a creation's answer.

Durability is unchanged: the worker is answered only after that commit. If the creation
fails, nothing was claimed and the parked claim goes on as if nothing happened. A claimer
that went away before its hand-off arrived (its request cancelled) is told so by
`deliver`, and the creator hands the tasks back (`store.work.release`: no lease counted as
lost). Claims parked on other replicas are woken by the commit's NOTIFY, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kernel.errors import MetaAgentError
from store import fastpath
from store.db import Database, Tx
from store.leases import Lease, new_token
from store.models import Agent, Task, from_row
from store.statemachine import send_born_claimed
from store.work import Claimed, release

__all__ = ["ANSWER_FIRST", "Handoffs", "Parked", "create_handing_off", "give_back", "handoffs"]

log = logging.getLogger(__name__)

# How long at most a creator waits for the claimer it handed a task to to be answered.
ANSWER_FIRST = 1.0
# How long a queue where a task inserted claimed found others pending hands off through
# the claim (Handoffs.crowded).
CROWDED_SECONDS = 1.0


@dataclass(eq=False)
class Parked:
    """One parked claim. `claim(tx)` sends its claim in the creator's transaction and
    returns what reads it (store.work.send_claim_tasks); `outcome` is set once that
    transaction ended: the tasks claimed, or None if it failed."""

    queue: str
    claim: Callable[[Tx], Awaitable[Callable[[], Awaitable[list[Claimed]]]]]
    # The claiming worker and its lease, when a task may be inserted already claimed for
    # it (store/born.py); None: always through `claim`.
    worker_id: str | None = None
    lease_seconds: float = 0.0
    # Builds the worker's answer for a task inserted claimed for it (the task as claimed,
    # its lease token) while the commit is awaited: store.db.Tx.meanwhile. None: not ahead.
    render: Callable[[Task, str], object] | None = None
    outcome: asyncio.Future[list[Claimed] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    taken: bool = False  # by a creator: the claimer waits for `outcome`
    gone: bool = False  # the claimer stopped waiting
    left: asyncio.Event = field(default_factory=asyncio.Event)  # set with `gone`

    def deliver(self, claimed: list[Claimed] | None) -> bool:
        """Hand the creator's outcome over; False when nobody will read it (the claimer is
        gone), so the creator must give back what it claimed."""
        if self.outcome.done():
            return False
        self.outcome.set_result(claimed)
        return not self.gone


class Handoffs:
    """The claims parked in this process, by queue, oldest first. Event loop only."""

    def __init__(self) -> None:
        self._parked: dict[str, list[Parked]] = {}
        self.handed = 0  # tasks claimed by a creation for a parked claim, and delivered
        # Queues where a task inserted claimed found others pending (store/born.py), until
        # when: a busy queue's hand-offs go through the claim, which takes those too in the
        # same transaction, instead of leaving them to the claimer's own round.
        self._crowded: dict[str, float] = {}

    def crowded(self, queue: str) -> bool:
        until = self._crowded.get(queue)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._crowded[queue]
        return False

    def crowd(self, queue: str) -> None:
        self._crowded[queue] = time.monotonic() + CROWDED_SECONDS

    def park(
        self,
        queue: str,
        claim: Callable[[Tx], Awaitable[Callable[[], Awaitable[list[Claimed]]]]],
        *,
        worker_id: str | None = None,
        lease_seconds: float = 0.0,
        render: Callable[[Task, str], object] | None = None,
    ) -> Parked:
        parked = Parked(queue, claim, worker_id, lease_seconds, render)
        self._parked.setdefault(queue, []).append(parked)
        return parked

    def parked(self, queue: str) -> int:
        """How many claims wait on `queue` in this process, not yet taken."""
        return len(self._parked.get(queue, ()))

    def withdraw(self, parked: Parked) -> None:
        """No creator takes `parked` from now on (its claimer woke, and decides); one that
        took it already delivers to it as before."""
        waiting = self._parked.get(parked.queue)
        if waiting is not None and parked in waiting:
            waiting.remove(parked)
            if not waiting:
                del self._parked[parked.queue]

    def leave(self, parked: Parked) -> None:
        """The claimer stops waiting (answered, timed out, cancelled): no creator takes it
        from now on. One already taken is left to its creator, which sees `gone`."""
        parked.gone = True
        parked.left.set()
        self.withdraw(parked)

    def take(self, queue: str) -> Parked | None:
        """The oldest claim parked on `queue`, now the caller's to run (or None)."""
        waiting = self._parked.get(queue)
        if not waiting:
            return None
        parked = waiting.pop(0)
        if not waiting:
            del self._parked[queue]
        parked.taken = True
        return parked


_registries: weakref.WeakKeyDictionary[Database, Handoffs] = weakref.WeakKeyDictionary()


def handoffs(db: Database) -> Handoffs:
    """The claims parked in this process on `db`."""
    found = _registries.get(db)
    if found is None:
        found = _registries[db] = Handoffs()
    return found


async def create_handing_off(db: Database, create: Callable[[Tx], Awaitable[Task]]) -> Task:
    """`create(tx)` (a task's creation) in a fast transaction, and in the same transaction
    the claim parked longest on the new task's queue, if any: its worker is answered once
    this commits."""
    parked: Parked | None = None
    registry = handoffs(db)

    async def work(tx: Tx) -> tuple[Task, list[Claimed] | None]:
        nonlocal parked
        born = _SqliteBorn(registry, parked) if db.is_sqlite else None
        tx.claimant = born  # SQLite's INSERT runs at once: the claim is asked for before it
        try:
            task = await create(tx)
        finally:
            tx.claimant = None
            if born is not None and born.parked is not None:
                parked = born.parked  # kept for a rerun, and told if this fails
        if parked is None:  # a rerun in a full transaction keeps the claim it took
            parked = registry.take(task.queue)
        if parked is None:
            return task, None
        if born is not None:
            if born.claimed is not None:
                return task, [await born.handed(tx, born.claimed)]
            if born.pending_first:
                registry.crowd(task.queue)
        try:
            take = await _born(tx, task, parked) or await parked.claim(tx)
        except MetaAgentError:
            # The worker's claim is refused (raised before its UPDATE, as every refusal of
            # a claim is): not the creation's business. The claimer claims on its own and
            # hears why.
            return task, None
        if not tx.deferrable:
            return task, await take()
        # Read after the commit (Tx.after): the creation, the claim and the Sync go out
        # together, one round trip for the whole hand-off.
        claimed: list[Claimed] = []

        async def read() -> None:
            claimed.extend(await take())

        tx.after.append(read)
        return task, claimed

    try:
        task, claimed = await db.fast_or_full(work)
    except BaseException:
        if parked is not None:
            parked.deliver(None)
        raise
    if parked is not None:
        if parked.deliver(claimed):
            registry.handed += len(claimed or ())
        elif claimed:
            await give_back(db, claimed)
            return task
        if claimed:  # the worker's answer first (see the module's docstring)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ANSWER_FIRST):
                    await parked.left.wait()
    return task


async def _born(tx: Tx, task: Task, parked: Parked) -> Callable[[], Awaitable[list[Claimed]]] | None:
    """`task` inserted already claimed for `parked`'s worker (store/born.py), if it can be:
    what reads the claim ([] when the statement found an older task pending, which the
    claimer then claims on its own); None: claim as usual."""
    registry = handoffs(tx.db)
    if parked.worker_id is None or registry.crowded(task.queue):
        return None
    token, token_hash = new_token()
    born = await send_born_claimed(tx, task, parked.worker_id, token_hash, parked.lease_seconds)
    if born is None:
        return None
    ahead: list[object] = []
    render = parked.render
    if render is not None:

        def build() -> None:
            try:
                ahead.append(render(born.task(), token))
            except Exception:  # built again when answering: never the creation's failure
                log.exception("building a claim's answer ahead failed")

        tx.meanwhile.append(build)

    async def read() -> list[Claimed]:
        got = await born.read()
        if got is None:
            registry.crowd(task.queue)
            return []
        claimed, agent = got
        agent_row = from_row(Agent, agent) if agent is not None else None
        return [Claimed(claimed, agent_row, token, ahead[0] if ahead else None)]

    return read


@dataclass(eq=False)
class _SqliteBorn:
    """The parked claim a SQLite creation takes before its INSERT: a store.born.Claimant."""

    registry: Handoffs
    parked: Parked | None  # taken already (a rerun keeps it)
    token: str = ""
    claimed: Task | None = None
    pending_first: bool = False

    def take(self, queue: str) -> tuple[str, str, float] | None:
        if self.token:  # one task per claim: asked once
            return None
        if self.parked is None:
            if self.registry.crowded(queue):
                return None
            self.parked = self.registry.take(queue)
        if self.parked is None or self.parked.worker_id is None:
            return None
        self.token, token_hash = new_token()
        return self.parked.worker_id, token_hash, self.parked.lease_seconds

    async def handed(self, tx: Tx, task: Task) -> Claimed:
        found = await fastpath.agents(tx, [task.agent]) if task.agent else []
        return Claimed(task, from_row(Agent, found[0]) if found else None, self.token)


async def give_back(db: Database, claimed: list[Claimed]) -> None:
    """The claimer left before its hand-off arrived: back to pending, as a worker's own
    release is (no lease counted as lost)."""

    async def work(tx: Tx) -> None:
        for c in claimed:
            with contextlib.suppress(MetaAgentError):  # no longer its: nothing to give back
                await release(tx, c.task.id, Lease(c.token, ()))

    await db.fast_or_full(work)
