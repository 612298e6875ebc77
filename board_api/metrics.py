"""Prometheus metrics: process counters and histograms, plus gauges read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from store import catalog, tasks
from store.db import Database
from store.models import Task

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_DURATION = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        # A registry per app, so several apps in one process (tests) don't collide.
        self.registry = CollectorRegistry()
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

    def finished(self, task: Task) -> None:
        if task.started_at and task.finished_at:
            self.duration.labels(task.status).observe((task.finished_at - task.started_at).total_seconds())
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
        async with db.read() as s:
            counts = await tasks.count_by_status(s)
            stats = await catalog.queue_stats(s)
        by_status = GaugeMetricFamily("meta_agent_tasks", "Tasks by status", labels=["status"])
        for status, n in counts.items():
            by_status.add_metric([status], n)
        depth = GaugeMetricFamily("meta_agent_queue_depth", "Pending tasks per queue", labels=["queue"])
        workers = GaugeMetricFamily("meta_agent_live_workers", "Live workers per queue", labels=["queue"])
        for queue, st in sorted(stats.items()):
            depth.add_metric([queue], st.get("pending_tasks", 0))
            workers.add_metric([queue], st.get("active_workers", 0))
        followers = GaugeMetricFamily("meta_agent_stream_followers", "Open live streams and long-polls")
        followers.add_metric([], db.hub.follower_count())
        scrape = CollectorRegistry()
        scrape.register(_Static([by_status, depth, workers, followers]))
        return generate_latest(self.registry) + generate_latest(scrape)


class _Static:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return iter(self.families)
