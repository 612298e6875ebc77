"""Prometheus metrics: process counters and histograms, plus gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kernel import failures
from store import gauges
from store.db import Database
from store.models import Task

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_DURATION = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        # A registry per app, so several apps in one process (tests) don't collide.
        self.registry = CollectorRegistry()
        self._by_status: dict[str, tuple[Any, Any]] = {}  # finished(): (finishes, duration) children
        self.dispatch = Histogram(
            "meta_agent_dispatch_seconds",
            "Task created → claimed by a worker (first attempt)",
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.duration = Histogram(
            "meta_agent_task_duration_seconds",
            "Task started → finished",
            ["status"],
            buckets=_DURATION,
            registry=self.registry,
        )
        self.finishes = Counter(
            "meta_agent_tasks_finished",
            "Tasks this process saw finish (completed or failed by their worker)",
            ["status"],
            registry=self.registry,
        )
        # Counted as tasks fail (here and in the reaper), never by reading the table: a
        # scrape stays as cheap at a million failed tasks as at none.
        self.failures = Counter(
            "meta_agent_tasks_failed",
            "Tasks this process saw fail, by failure class (kernel/failures.py)",
            ["failure_class"],
            registry=self.registry,
        )
        for cls in failures.CLASSES:  # every class shows, at 0 until one fails
            self.failures.labels(cls)
        self.events = Counter(
            "meta_agent_events_ingested", "Events posted by workers", registry=self.registry
        )
        self.tokens = Counter(
            "meta_agent_llm_tokens",
            "LLM tokens used by finished tasks",
            ["agent", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "meta_agent_llm_cost_usd",
            "LLM cost (USD, as litellm prices it) of finished tasks",
            ["agent"],
            registry=self.registry,
        )

    def failed(self, task: Task) -> None:
        """Count a failed task by its class (the worker's fail, or the reaper's worker_lost)."""
        if task.status == "failed" and task.error_code:
            self.failures.labels(failures.failure_class(task.error_code)).inc()

    def finished(self, task: Task) -> None:
        status = task.status
        children = self._by_status.get(status)
        if children is None:
            # prometheus_client's `labels()` validates and looks up under a lock each time
            # (~10 Python calls); a finished task's status is one of three: kept per status.
            children = self._by_status[status] = (self.finishes.labels(status), self.duration.labels(status))
        finishes, duration = children
        finishes.inc()
        self.failed(task)
        if task.started_at and task.finished_at:
            duration.observe((task.finished_at - task.started_at).total_seconds())
        usage = task.usage or {}
        agent = task.agent or ""
        for kind in ("prompt_tokens", "completion_tokens"):
            n = usage.get(kind)
            if isinstance(n, int | float) and n > 0:
                self.tokens.labels(agent, kind.removesuffix("_tokens")).inc(n)
        cost = usage.get("cost", usage.get("cost_usd"))
        if isinstance(cost, int | float) and cost > 0:
            self.cost.labels(agent).inc(cost)

    async def render(self, db: Database) -> bytes:
        # Capped, indexed counts only (store/gauges.py): a scrape costs the same at a
        # million tasks as at ten. Finished tasks are counted as they finish (`finished`).
        async with db.read() as s:
            counts = await gauges.unfinished_counts(s)
            depths = await gauges.pending_by_queue(s)
            live = await gauges.live_workers(s)
        by_status = GaugeMetricFamily(
            "meta_agent_tasks", f"Unfinished tasks by status (at most {gauges.GAUGE_CAP})", labels=["status"]
        )
        capped = GaugeMetricFamily(
            "meta_agent_tasks_count_capped",
            "1 when meta_agent_tasks stopped counting at its cap",
            labels=["status"],
        )
        for status in gauges.UNFINISHED:
            n, over = counts.get(status, (0, False))
            by_status.add_metric([status], n)
            capped.add_metric([status], int(over))
        depth = GaugeMetricFamily(
            "meta_agent_queue_depth",
            f"Pending tasks per queue (at most {gauges.GAUGE_CAP})",
            labels=["queue"],
        )
        workers = GaugeMetricFamily("meta_agent_live_workers", "Live workers per queue", labels=["queue"])
        for queue in sorted(set(depths) | set(live)):
            depth.add_metric([queue], depths.get(queue, (0, False))[0])
            workers.add_metric([queue], live.get(queue, 0))
        followers = GaugeMetricFamily("meta_agent_stream_followers", "Open live streams and long-polls")
        # Less the schedule ticker, which waits on the hub too but is nobody's stream.
        followers.add_metric([], db.hub.follower_count())
        # Hot-path work that needed the ORM session and ran again in a full transaction
        # (store.db.fast_or_full): each one paid twice. A name that keeps climbing is a hot
        # path gone slow (a failure report in an exchange was one, found under issue #15).
        fallbacks = CounterMetricFamily(
            "meta_agent_fast_path_fallbacks",
            "Hot-path work run again in a full transaction, by the work's name",
            labels=["work"],
        )
        for work, n in sorted(db.fast_fallbacks.items()):
            fallbacks.add_metric([work], n)
        # On PostgreSQL, whether a commit now sends a NOTIFY and reads its rows before the
        # Sync (store.peers): for 2 s after the LISTEN starts, and while another replica is
        # heard. Alone and warmed up, a dispatch is a round trip shorter (~0.6 ms, #15).
        notifying = GaugeMetricFamily(
            "meta_agent_commits_notify",
            "1 while this replica's commits notify other replicas (warming up, or one heard)",
        )
        notifying.add_metric([], int(not db.is_sqlite and db.hub.peers.needed()))
        scrape = CollectorRegistry()
        scrape.register(_Static([by_status, capped, depth, workers, followers, fallbacks, notifying]))
        return generate_latest(self.registry) + generate_latest(scrape)


class _Static:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
