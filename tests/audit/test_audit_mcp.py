"""Actions through the official MCP client over /mcp, and a signed webhook delivery, show
up in the audit log with the right actor and surface (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.board_api.test_api import seed
from tests.hooks.helpers import github_headers, payload, post_hook
from tests.support import LiveServer
from tests.tools.helpers import ok


async def test_mcp_actions_are_recorded_with_the_callers_key(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {admin}"}) as c:
        operator = c.post("/keys", json={"name": "ide-assistant", "scopes": ["operator"]}).json()["key"]

    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx2.AsyncClient(timeout=60, headers=headers) as http:
        async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as mcp:  # type: ignore[arg-type]
            task = await ok(mcp, "create_task", agent="echo", prompt="check the cluster")
            await ok(mcp, "cancel_task", task_id=task["id"])

    with server.client(headers={"Authorization": f"Bearer {admin}"}) as c:
        items = c.get("/audit", params={"target_id": task["id"]}).json()["items"]
    assert [(e["action"], e["actor"], e["actor_kind"], e["source"]) for e in items] == [
        ("task.cancel", "ide-assistant", "key", "mcp"),
        ("task.create", "ide-assistant", "key", "mcp"),
    ]


def test_a_webhook_delivery_is_recorded_as_the_hook(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        hook = c.post(
            "/hooks", json={"name": "alerts", "agent": "echo", "queue": "q1", "prompt_template": "Look"}
        ).json()
        body = payload()
        sent = post_hook(server, "alerts", body, github_headers(hook["secret"], body, "d-1"))
        assert sent.status_code == 202, sent.text
        items = c.get("/audit", params={"action": "hook.*"}).json()["items"]
        assert [e["details"] for e in items] == [{"agent": "echo", "queue": "q1", "scheme": "github"}]
        assert hook["secret"] not in str(c.get("/audit").json())
        (made,) = c.get("/audit", params={"target_id": sent.json()["task_id"]}).json()["items"]
    assert (made["action"], made["actor"], made["actor_kind"], made["source"]) == (
        "task.create",
        "hook:alerts",
        "hook",
        "hook",
    )
