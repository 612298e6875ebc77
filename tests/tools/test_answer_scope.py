"""respond_to_task over MCP takes the caller's scopes: a viewer cannot answer (approve)."""

from __future__ import annotations

from typing import Any

from tests.support import LiveServer
from tests.tools.conftest import Connect
from tests.tools.helpers import error, ok
from tests.tools.test_auth import make_keys


async def test_a_viewer_key_cannot_answer_over_mcp(
    server_factory: Any, db_url: str, connect: Connect
) -> None:
    srv: LiveServer = server_factory(db_url)
    keys = make_keys(srv)
    with srv.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
        worker = api.post("/keys", json={"name": "w", "scopes": ["worker"]}).json()["key"]
        tid = api.post("/tasks", json={"agent": "greet", "prompt": "hi", "queue": "q1"}).json()["id"]
    with srv.client(headers={"Authorization": f"Bearer {worker}"}) as w:
        (item,) = w.post("/worker-queues/q1/claim", json={"worker_id": "w1"}).json()["tasks"]
        question = {"token": item["token"], "question": "Run the risky step?", "choices": ["yes", "no"]}
        assert w.post(f"/tasks/{tid}/request-input", json=question).json()["status"] == "requires_input"
    async with connect("http", srv.url, api_key=keys["viewer"]) as c:
        text = await error(c, "respond_to_task", task_id=tid, answer="yes")
        assert "operator" in text, text
        assert (await ok(c, "get_task", task_id=tid))["status"] == "requires_input"
    async with connect("http", srv.url, api_key=keys["operator"]) as c:
        assert (await ok(c, "respond_to_task", task_id=tid, answer="yes"))["status"] == "pending"
