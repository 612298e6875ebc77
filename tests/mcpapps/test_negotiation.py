"""MCP Apps negotiation through the official `mcp` Client: a client that declares the extension
(with the `text/html;profile=mcp-app` MIME type) gets the `_meta.ui` links and the `ui://`
views; every other client gets exactly today's tools, resources and results.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mcp import Client
from mcp.client.extension import advertise

from tests.support import LiveServer
from tests.tools.conftest import Connect, connect  # noqa: F401  (fixture)
from tools.apps import APP_MIME_TYPE, BOARD_URI, CARD_URI, EXTENSION_ID
from tools.backend import Backend
from tools.server import build_server

DECLARES = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
TODAYS_TOOLS = {
    "list_agents",
    "list_queues",
    "create_task",
    "get_task",
    "list_tasks",
    "cancel_task",
    "respond_to_task",
    "retry_task",
    "stream_task",
}
SCHEDULE_TOOLS = {"list_schedules", "create_schedule", "pause_schedule", "resume_schedule"}


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)  # type: ignore[no-any-return]


def without_ui(tool: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in tool.get("_meta", {}).items() if k != "ui"}
    rest = {k: v for k, v in tool.items() if k != "_meta"}
    return {**rest, "_meta": meta} if meta else rest


async def lists(c: Client) -> tuple[dict[str, dict[str, Any]], list[str]]:
    tools = {t.name: dump(t) for t in (await c.list_tools()).tools}
    resources = [str(r.uri) for r in (await c.list_resources()).resources]
    return tools, resources


async def results(c: Client, task_id: str) -> list[dict[str, Any]]:
    """The two tools' results, as a plain client and a host would both receive them."""
    out = []
    for name, args in (("list_tasks", {}), ("stream_task", {"task_id": task_id, "timeout": 1})):
        result = await c.call_tool(name, args)
        assert not result.is_error, result.content
        out.append(dump(result))
    return out


@pytest.fixture
def plane(server: LiveServer) -> LiveServer:
    """A control plane with one finished task (so that stream_task returns at once)."""
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        agent = {"name": "helper", "runtime": "command", "command": ["true"], "default_queue": "q1"}
        assert c.post("/agents", json=agent).status_code == 201
        tid = c.post("/tasks", json={"agent": "helper", "prompt": "tidy up"}).json()["id"]
        assert c.post(f"/tasks/{tid}/cancel").status_code == 200
    return server


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("transport", ["inprocess", "http", "stdio"])
async def test_plain_clients_get_todays_tools_resources_and_results(
    transport: str,
    mode: str,
    plane: LiveServer,
    connect: Connect,  # noqa: F811
) -> None:
    with plane.client() as api:
        tid = api.get("/tasks").json()["items"][0]["id"]
    async with (
        connect(transport, plane.url, mode=mode) as plain,
        connect(transport, plane.url, mode=mode, extensions=[DECLARES]) as host,
    ):
        plain_tools, plain_resources = await lists(plain)
        host_tools, host_resources = await lists(host)
        # Today's lists, to the letter: no `_meta` on any tool, no ui:// resource.
        expected = TODAYS_TOOLS if transport == "inprocess" else TODAYS_TOOLS | SCHEDULE_TOOLS  # stdio, /mcp
        assert set(plain_tools) == expected
        assert [name for name, tool in plain_tools.items() if "_meta" in tool] == []
        assert plain_resources == ["agents://catalog"]
        # A host gets the links and the views, and nothing else differs.
        assert host_tools["stream_task"]["_meta"] == {"ui": {"resourceUri": CARD_URI}}
        assert host_tools["list_tasks"]["_meta"] == {"ui": {"resourceUri": BOARD_URI}}
        assert [n for n, t in host_tools.items() if "_meta" in t] == ["list_tasks", "stream_task"]
        assert {n: without_ui(t) for n, t in host_tools.items()} == plain_tools
        assert sorted(host_resources) == sorted([CARD_URI, BOARD_URI, "agents://catalog"])
        # The results are the same for both: text for the model, structured content for a view.
        plain_results, host_results = await results(plain, tid), await results(host, tid)
        assert plain_results == host_results
        assert plain_results[0]["structuredContent"]["tasks"][0]["id"] == tid
        assert plain_results[1]["structuredContent"]["outcome"] == "finished"
        assert plain_results[1]["content"][0]["text"]  # the text fallback a plain host shows


async def test_declaring_the_extension_without_the_html_mime_type_is_a_plain_client() -> None:
    mcp = build_server(Backend("http://127.0.0.1:9"))  # lists need no control plane
    other = advertise(EXTENSION_ID, {"mimeTypes": ["application/x-something-else"]})
    for extensions in ([advertise(EXTENSION_ID)], [other]):
        async with Client(mcp, extensions=extensions) as c:
            tools, resources = await lists(c)
            assert [n for n, t in tools.items() if "_meta" in t] == []
            assert resources == ["agents://catalog"]


async def test_the_views_are_self_contained_mcp_app_resources(
    plane: LiveServer,
    connect: Connect,  # noqa: F811
) -> None:
    async with connect("http", plane.url, extensions=[DECLARES]) as host:
        assert host.server_capabilities is not None
        assert host.server_capabilities.extensions == {EXTENSION_ID: {}}  # advertised (2026-07-28)
        listed = {str(r.uri): dump(r) for r in (await host.list_resources()).resources}
        for uri in (CARD_URI, BOARD_URI):
            assert listed[uri]["mimeType"] == APP_MIME_TYPE
            content = dump((await host.read_resource(uri)).contents[0])
            assert content["mimeType"] == APP_MIME_TYPE
            csp = content["_meta"]["ui"]["csp"]
            # Declared, and empty: no origin to connect to, load from, frame or base on.
            assert csp == {
                "connectDomains": [],
                "resourceDomains": [],
                "frameDomains": [],
                "baseUriDomains": [],
            }
            assert content["_meta"]["ui"]["prefersBorder"] is True
            html = content["text"]
            assert html.startswith("<!DOCTYPE html>") and "{{" not in html  # parts inlined
            assert '"ui/initialize"' in html and "2026-01-26" in html
            # Nothing that would reach the network (the browser tests prove it at run time).
            for pattern in (r"https?://", r"\bsrc=", r"\bhref=", r"\bfetch\(", "XMLHttpRequest", "WebSocket"):
                assert not re.search(pattern, html), (uri, pattern)
