"""The load generator: one process streaming `message_delta` events for its share of tasks.

Every task follows a fixed schedule: event n (1-based) is due at T0 + offset + (n-1)/rate,
whatever the server does. Events go through the worker's own EventBatcher (~50 ms batches,
one post in flight per task) and its ProgressPipe (the batches of the sender's tasks that
are ready together leave in one call), so the server sees what a real worker sends; a post that fails is retried like `worker.task` does. Each event's data
carries `n` (its number in the task), `t` (`time.time()`) and `m` (`time.monotonic()`) at
the moment the agent produced it, and `p`, the monotonic time its batch was posted.

When the schedule ends, each task drains its batcher and completes with the rest of its
events on the final call, which ends its followers' streams.

    python -m bench.stream.sender PLAN.json SENDER_INDEX
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bench.stream.plan import Plan, Planned, finish, handshake, summary
from sdk.client import AsyncControlPlaneClient
from sdk.transport import ApiError
from worker.batcher import EventBatcher
from worker.progress import ProgressPipe

TICK = 0.005
HEARTBEAT = 5.0  # a third of the shortest lease worth running this with (the default is 30 s)
WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", "."]


class Stats:
    def __init__(self, window: tuple[float, float]) -> None:
        self.window = window
        self.added = 0
        self.acked = 0
        self.acked_in_window = 0
        self.added_in_window = 0
        self.posts = 0
        self.posts_in_window = 0
        self.retries = 0
        self.post_s: list[float] = []
        self.late_s: list[float] = []
        self.backlog_max = 0
        self.errors: list[str] = []
        self.retried: list[str] = []  # the first few reasons a call was retried
        self.heartbeat_s: list[float] = []

    def ack(self, n: int, started: float) -> None:
        now = time.monotonic()
        self.posts += 1
        self.acked += n
        self.post_s.append(now - started)
        if self.window[0] <= now < self.window[1]:
            self.acked_in_window += n
            self.posts_in_window += 1


class Stream:
    """One task: its schedule, its batcher, its posts."""

    def __init__(
        self, plan: Plan, t: Planned, api: AsyncControlPlaneClient, stats: Stats, pipe: ProgressPipe
    ) -> None:
        self.t, self.api, self.stats, self.pipe = t, api, stats, pipe
        self.offset = plan.offset(t.i)
        self.rate = plan.rate
        self.n = 0
        self.lost = False
        self.done = False  # completed: no longer held, so no longer heartbeated
        self.batcher = EventBatcher(self._post)

    async def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        delay = 0.05
        while True:
            try:
                return await fn(self.t.id, self.t.token, *args, **kw)
            except ApiError as exc:
                if not exc.retryable:
                    self.lost = self.lost or exc.status == 409
                    self.stats.errors.append(f"{what} {self.t.id}: {exc}")
                    raise
                self.stats.retries += 1
                if len(self.stats.retried) < 10:
                    self.stats.retried.append(f"{what}: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _post(self, events: list[dict[str, Any]], phase: str | None = None) -> None:
        started = time.monotonic()
        for e in events:
            e["data"]["p"] = started
        await self._call("events", self.pipe.post, events, phase=phase)
        self.stats.ack(len(events), started)

    def emit_due(self, t0: float, now: float, total: int) -> None:
        due = min(total, int((now - t0 - self.offset) * self.rate) + 1) if now >= t0 + self.offset else 0
        while self.n < due:
            self.n += 1
            self.stats.late_s.append(now - (t0 + self.offset + (self.n - 1) / self.rate))
            if self.stats.window[0] <= now < self.stats.window[1]:
                self.stats.added_in_window += 1
            self.stats.added += 1
            data = {"text": WORDS[self.n % len(WORDS)], "n": self.n, "t": time.time(), "m": now}
            self.batcher.add("message_delta", data)

    async def finish(self) -> None:
        rest = await self.batcher.drain()
        started = time.monotonic()
        for e in rest:
            e["data"]["p"] = started
        await self._call("complete", self.api.worker.complete, {"events": self.n}, events=rest)
        self.done = True
        self.stats.ack(len(rest), started)


async def heartbeats(
    api: AsyncControlPlaneClient, worker_id: str, plan: Plan, streams: list[Stream], stats: Stats
) -> None:
    """The worker's heartbeat: one call extends every lease it still holds; a failed one is
    retried soon (a heartbeat loop that died on one 500 let every lease lapse under load)."""
    while True:
        held = [{"id": s.t.id, "token": s.t.token} for s in streams if not s.done]
        started = time.monotonic()
        try:
            out = await api.worker.heartbeat(worker_id, plan.queue, len(held), held)
        except ApiError as exc:
            if len(stats.retried) < 10:
                stats.retried.append(f"heartbeat: {exc}")
            await asyncio.sleep(0.5)
            continue
        stats.heartbeat_s.append(time.monotonic() - started)
        done = {s.t.id for s in streams if s.done}  # completed while the call was in flight
        if lost := [tid for tid in out.lost if tid not in done]:
            stats.errors.append(f"heartbeat: {len(lost)} leases lost")
        await asyncio.sleep(HEARTBEAT)


async def run(plan: Plan, k: int) -> dict[str, Any]:
    mine = [t for t in plan.tasks if t.sender == k]
    clients = {u: AsyncControlPlaneClient(u, timeout=60.0) for u in sorted({t.ingest for t in mine})}
    t0 = handshake()
    window = (t0 + plan.warmup, t0 + plan.warmup + plan.seconds)
    stats = Stats(window)
    # One pipe per replica a sender posts to: a worker's tasks' batches leave together.
    pipes = {u: ProgressPipe(c.worker, plan.queue) for u, c in clients.items()}
    streams = [Stream(plan, t, clients[t.ingest], stats, pipes[t.ingest]) for t in mine]
    beat = asyncio.create_task(heartbeats(clients[mine[0].ingest], f"stream-{k}", plan, streams, stats))
    total = plan.per_task
    next_backlog = t0
    calls_at: list[int] = []  # HTTP calls when the window opened, and when it closed
    while any(s.n < total for s in streams):
        now = time.monotonic()
        for s in streams:
            if not s.lost:
                s.emit_due(t0, now, total)
        if len(calls_at) < 2 and now >= window[len(calls_at)]:
            calls_at.append(sum(p.calls for p in pipes.values()))
        if now >= next_backlog:
            stats.backlog_max = max(stats.backlog_max, stats.added - stats.acked)
            next_backlog = now + 0.1
        await asyncio.sleep(TICK)
    schedule_end = time.monotonic()
    backlog_at_end = stats.added - stats.acked
    outcome = await asyncio.gather(*(s.finish() for s in streams), return_exceptions=True)
    drained = time.monotonic()
    beat.cancel()
    for c in clients.values():
        await c.aclose()
    return {
        "sender": k,
        "tasks": len(mine),
        "sent": {s.t.id: s.n for s in streams},
        "failed_to_finish": sum(isinstance(o, BaseException) for o in outcome),
        "added": stats.added,
        "acked": stats.acked,
        "added_in_window": stats.added_in_window,
        "acked_in_window": stats.acked_in_window,
        # Posts are HTTP calls (a call carries the batches of several tasks, worker.progress).
        "posts": sum(p.calls for p in pipes.values()),
        "posts_in_window": calls_at[1] - calls_at[0] if len(calls_at) == 2 else stats.posts_in_window,
        "task_batches": stats.posts,
        "events_per_post": round(stats.acked / max(1, sum(p.calls for p in pipes.values())), 1),
        "retries": stats.retries,
        "post": summary(stats.post_s),
        "late": summary(stats.late_s),
        "backlog_max": stats.backlog_max,
        "backlog_at_schedule_end": backlog_at_end,
        "schedule_overrun_s": round(schedule_end - (t0 + plan.warmup + plan.seconds), 3),
        "drain_s": round(drained - schedule_end, 3),
        "heartbeat": summary(stats.heartbeat_s),
        "retried": stats.retried[:10],
        "errors": stats.errors[:20],
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plan = Plan.load(Path(sys.argv[1]))
    finish(asyncio.run(run(plan, int(sys.argv[2]))))


if __name__ == "__main__":
    main()
