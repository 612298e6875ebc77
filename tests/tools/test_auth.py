"""/mcp takes the control plane's API keys as bearer tokens, and the caller's key decides what
the tools may do; DNS-rebinding protection allows loopback and the configured public host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.support import LiveServer
from tests.tools.conftest import META_AGENT, Connect, setup_catalog
from tests.tools.helpers import error, ok

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def make_keys(srv: LiveServer) -> dict[str, Any]:
    """An admin key made while the server is open, then one key per scope."""
    with srv.client() as open_api:
        admin = open_api.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
    keys: dict[str, Any] = {"admin": admin}
    with srv.client(headers={"Authorization": f"Bearer {admin}"}) as api:
        setup_catalog(api)
        for scope in ("operator", "viewer"):
            made = api.post("/keys", json={"name": f"{scope}-key", "scopes": [scope]}).json()
            keys[scope], keys[f"{scope}_id"] = made["key"], made["id"]
    return keys


@pytest.fixture
def secured(plane_factory: Any) -> tuple[LiveServer, dict[str, Any]]:
    srv = plane_factory()
    return srv, make_keys(srv)


@pytest.fixture
def plane_factory(server_factory: Any, db_url: str) -> Any:
    return lambda **kw: server_factory(db_url, **kw)


def test_no_token_gets_401_with_the_resource_metadata(secured: tuple[LiveServer, dict[str, Any]]) -> None:
    srv, keys = secured
    for headers in ({}, {"Authorization": "Bearer ma_nope_nope"}, {"Authorization": "Bearer junk"}):
        resp = httpx.post(f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, **headers})
        assert resp.status_code == 401
        challenge = resp.headers["www-authenticate"]
        metadata_url = f"{srv.url}/.well-known/oauth-protected-resource/mcp"
        assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata_url}"' in challenge
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == f"{srv.url}/mcp" and metadata["bearer_methods_supported"] == ["header"]
    ok_resp = httpx.post(
        f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {keys['viewer']}"}
    )
    assert ok_resp.status_code == 200 and "2025-11-25" in ok_resp.text


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_a_viewer_key_lists_but_cannot_create_or_cancel(
    transport: str, secured: tuple[LiveServer, dict[str, Any]], connect: Connect
) -> None:
    srv, keys = secured
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with srv.client(headers=admin) as api:
        task = api.post(
            "/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": "true"}}
        ).json()
    async with connect(transport, srv.url, api_key=keys["viewer"]) as c:
        assert [a["name"] for a in (await ok(c, "list_agents"))["agents"]] == ["greet", "sh"]
        assert [t["id"] for t in (await ok(c, "list_tasks"))["tasks"]] == [task["id"]]
        assert (await ok(c, "get_task", task_id=task["id"]))["status"] == "pending"
        for tool, args in (
            ("create_task", {"agent": "greet", "prompt": "hi", "parameters": {"who": "x"}}),
            ("cancel_task", {"task_id": task["id"]}),
            ("retry_task", {"task_id": task["id"]}),
        ):
            text = await error(c, tool, **args)
            assert "operator" in text and "viewer key can only read" in text, text
    with srv.client(headers=admin) as api:
        tasks = api.get("/tasks").json()["items"]
    assert [(t["id"], t["status"]) for t in tasks] == [(task["id"], "pending")]


async def test_an_operator_key_creates_as_itself(
    secured: tuple[LiveServer, dict[str, Any]], connect: Connect
) -> None:
    srv, keys = secured
    async with connect("http", srv.url, api_key=keys["operator"]) as c:
        created = await ok(c, "create_task", agent="greet", prompt="hi", queue="q1")
    with srv.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
        task = api.get(f"/tasks/{created['id']}").json()
    assert task["source"] == "mcp" and task["requested_by"] == "operator-key"


async def test_a_revoked_key_is_refused(secured: tuple[LiveServer, dict[str, Any]], connect: Connect) -> None:
    srv, keys = secured
    async with connect("http", srv.url, api_key=keys["viewer"]) as c:
        await ok(c, "list_queues")
        with srv.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
            assert api.delete(f"/keys/{keys['viewer_id']}").status_code in (200, 204)
        with pytest.raises(MCPError):  # the session's next request gets 401
            await c.call_tool("list_queues", {})
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {keys['viewer']}"}
        )
    assert resp.status_code == 401
    with pytest.raises(BaseExceptionGroup) as at_start:  # the client cannot even connect
        async with connect("http", srv.url, api_key=keys["viewer"]):
            pass
    assert at_start.group_contains(MCPError, depth=None)


async def test_stdio_with_a_revoked_key_explains_the_refusal(
    secured: tuple[LiveServer, dict[str, Any]], connect: Connect
) -> None:
    srv, keys = secured
    with srv.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
        api.delete(f"/keys/{keys['viewer_id']}")
    async with connect("stdio", srv.url, api_key=keys["viewer"]) as c:
        text = await error(c, "list_agents")
    assert "refused the API key" in text and "META_AGENT_API_KEY" in text


def test_dns_rebinding_protection_allows_loopback_and_the_public_host(plane_factory: Any) -> None:
    srv = plane_factory(public_url="https://cp.example.test")
    post = {"json": INIT, "headers": MCP_HEADERS}
    assert httpx.post(f"{srv.url}/mcp", **post).status_code == 200  # open loopback server
    for host in ("evil.example.com", "cp.example.test.evil.com", f"attacker:{srv.settings.port}"):
        resp = httpx.post(f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, "Host": host})
        assert resp.status_code == 421, host
    for host in ("cp.example.test", f"localhost:{srv.settings.port}"):
        resp = httpx.post(f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, "Host": host})
        assert resp.status_code == 200, host
    evil = httpx.post(
        f"{srv.url}/mcp", json=INIT, headers={**MCP_HEADERS, "Origin": "http://evil.example.com"}
    )
    assert evil.status_code == 403
    # /mcp is served at exactly that path: no redirect to /mcp/.
    assert httpx.post(f"{srv.url}/mcp", **post).history == []


async def test_stdio_finds_url_and_key_in_the_config_file_with_a_bare_environment(
    secured: tuple[LiveServer, dict[str, Any]], tmp_path: Path
) -> None:
    """MCP clients start servers with HOME, PATH and little else: the config file is enough."""
    srv, keys = secured
    cfg = tmp_path / ".config" / "meta-agent" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'url = "{srv.url}"\napi_key = "{keys["operator"]}"\npublic_url = "https://board.test"\n')
    params = StdioServerParameters(command=META_AGENT, args=["mcp"], env={"HOME": str(tmp_path)})
    async with Client(params) as c:
        created = await ok(c, "create_task", agent="greet", prompt="hi")
    assert created["board_url"] == f"https://board.test/#/tasks/{created['id']}"
    with srv.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
        assert api.get(f"/tasks/{created['id']}").json()["requested_by"] == "operator-key"
