"""`meta-agent mcp` as MCP clients run it: stdout is JSON-RPC only, settings from the
environment win over the config file, and teams can be started like agents.
"""

from __future__ import annotations

import asyncio
import json
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.support import ROOT, LiveServer, free_port
from tests.tools.conftest import META_AGENT, Connect
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


async def test_stdout_carries_json_rpc_only(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "META_AGENT_URL": f"http://127.0.0.1:{free_port()}",
    }
    proc = await asyncio.create_subprocess_exec(
        META_AGENT, "mcp", cwd=ROOT, env=env, stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    assert proc.stdin and proc.stdout and proc.stderr

    async def send(message: dict[str, Any]) -> None:
        proc.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
        await proc.stdin.drain()  # type: ignore[union-attr]

    async def reply() -> dict[str, Any]:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        return json.loads(line)  # type: ignore[no-any-return]  # a line that is not JSON fails here

    await send(INIT)
    assert (await reply())["result"]["serverInfo"]["name"] == "meta-agent"
    await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    await send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    listed = await reply()
    assert listed["id"] == 2 and len(listed["result"]["tools"]) == 13  # 9 + the schedule tools
    proc.stdin.close()
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert rest == b"" and proc.returncode == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_environment_wins_over_the_config_file(sqlite_plane: LiveServer, tmp_path: Path) -> None:
    cfg = tmp_path / ".config" / "meta-agent" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'url = "http://127.0.0.1:{free_port()}"\npublic_url = "https://from-file.test"\n')
    env = {"HOME": str(tmp_path), "META_AGENT_URL": sqlite_plane.url}
    async with Client(StdioServerParameters(command=META_AGENT, args=["mcp"], env=env)) as c:
        created = await ok(c, "create_task", agent="greet", prompt="hi", queue="q1")
    # The URL came from the environment, the (unset there) public URL from the file.
    assert created["board_url"].startswith("https://from-file.test/#/tasks/")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_team_is_listed_and_started_like_an_agent(sqlite_plane: LiveServer, connect: Connect) -> None:
    with sqlite_plane.client() as api:
        api.post("/worker-queues", json={"name": "idle"})
        team = {"name": "crew", "description": "greeters", "coordinator": "greet", "default_queue": "idle"}
        assert api.post("/teams", json=team).status_code == 201
    async with connect("stdio", sqlite_plane.url) as c:
        catalog = await ok(c, "list_agents", query="greeters")
        assert catalog["agents"] == [] and [t["name"] for t in catalog["teams"]] == ["crew"]
        created = await ok(c, "create_task", team="crew", prompt="hello all")
        assert (created["team"], created["agent"], created["queue"]) == ("crew", "greet", "idle")
        assert "team 'nobody' not found" in await error(c, "create_task", team="nobody", prompt="x")
