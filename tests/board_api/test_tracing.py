"""Request spans with the task they touched, when tracing is on."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from board_api.tracing import instrument
from cli.compose import create_app
from kernel.settings import Settings


async def test_requests_are_traced_with_their_task(db_url: str) -> None:
    app = create_app(Settings(database_url=db_url))
    spans = InMemorySpanExporter()
    provider = instrument(app, spans, batch=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1/api/v1") as c:
            await c.post("/worker-queues", json={"name": "q1"})
            await c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"})
            tid = (await c.post("/tasks", json={"agent": "echo", "prompt": "traced"})).json()["id"]
            await c.post(f"/tasks/{tid}/cancel")
    provider.shutdown()
    server_spans = [s for s in spans.get_finished_spans() if s.attributes and "task.id" in s.attributes]
    assert [(s.attributes["http.route"], s.attributes["task.status"]) for s in server_spans] == [
        ("/api/v1/tasks", "pending"),
        ("/api/v1/tasks/{task_id}/cancel", "cancelled"),
    ]
    assert all(s.attributes["task.id"] == tid for s in server_spans)
