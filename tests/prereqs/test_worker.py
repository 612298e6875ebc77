"""A real worker and the MCP tool against a live control plane (SQLite and PostgreSQL):
what the worker reports, a prerequisite gone between claim and run, `list_queues`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
from mcp import Client

from sdk.client import AsyncControlPlaneClient
from tests.board_api.test_api import seed
from tests.prereqs.test_api import DEPLOYER
from tests.support import LiveServer, wait_for
from tools.backend import Backend
from tools.server import build_server
from worker.capabilities import Inventory, missing_message
from worker.main import Worker


def fake_bin(folder: Path, name: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def task(c: httpx.Client, tid: str) -> dict[str, Any]:
    return c.get(f"/tasks/{tid}").json()  # type: ignore[no-any-return]


async def wait(check: Any, what: str) -> Any:
    """tests.support.wait_for off the event loop, so the in-process worker keeps running."""
    return await asyncio.to_thread(wait_for, check, 10.0, what)


async def test_a_binary_gone_between_claim_and_run_fails_the_task_naming_it(
    server_factory: Any, db_url: str, tmp_path: Path
) -> None:
    server: LiveServer = server_factory(db_url)
    kubectl = fake_bin(tmp_path / "bin", "kubectl")
    inventory = Inventory({"PATH": str(tmp_path / "bin"), "KUBECONFIG": "/etc/kube"})
    with server.client() as c:
        seed(c)
        assert c.post("/agents", json=DEPLOYER).status_code == 201
        async with AsyncControlPlaneClient(server.url, timeout=10) as client:
            worker = Worker(client, "q1", workspace_root=tmp_path / "ws", claim_wait=1, inventory=inventory)
            stop = asyncio.Event()
            run = asyncio.create_task(worker.run(stop))
            try:
                # Its first claim told the control plane what it has.
                await wait(
                    lambda: c.get("/agents/deployer/check").json()["runnable"], "the worker's capabilities"
                )
                kubectl.unlink()  # still in the scan it sent: the control plane hands the task over
                tid = c.post("/tasks", json={"agent": "deployer", "prompt": "ship"}).json()["id"]
                done = await wait(lambda: (t := task(c, tid))["status"] == "failed" and t, "the failure")
            finally:
                stop.set()
                await asyncio.wait_for(run, 20)
    assert done["error"] == {
        "code": "missing_prerequisites",
        "message": missing_message(["bin:kubectl"]),
    }
    assert "executable `kubectl`" in done["error"]["message"]
    assert done["failure_class"] == "missing_prerequisites"
    assert done["worker_id"] is None or done["attempt"] == 1


async def test_list_queues_says_which_agents_the_live_workers_can_run(
    server_factory: Any, db_url: str, tmp_path: Path
) -> None:
    server: LiveServer = server_factory(db_url)
    with server.client() as c:
        seed(c)
        assert c.post("/agents", json=DEPLOYER).status_code == 201
        assert (
            c.post(
                "/agents", json={**DEPLOYER, "name": "plain-ish", "requires": {"env": ["HOME"]}}
            ).status_code
            == 201
        )
        inventory = Inventory({"PATH": "", "HOME": "/home/w"})
        async with AsyncControlPlaneClient(server.url, timeout=10) as client:
            worker = Worker(client, "q1", workspace_root=tmp_path / "ws", claim_wait=1, inventory=inventory)
            stop = asyncio.Event()
            run = asyncio.create_task(worker.run(stop))
            try:
                await wait(
                    lambda: c.get("/agents/plain-ish/check").json()["runnable"], "the worker's capabilities"
                )
                async with Client(build_server(Backend(server.url, None))) as mcp:  # type: ignore[arg-type]
                    result = await mcp.call_tool("list_queues", {})
            finally:
                stop.set()
                await asyncio.wait_for(run, 20)
    assert not result.is_error and isinstance(result.structured_content, dict)
    [q1] = [q for q in result.structured_content["queues"] if q["name"] == "q1"]
    assert q1["can_run"] == ["plain-ish"]
    assert q1["cannot_run"] == {"deployer": ["bin:kubectl", "env:KUBECONFIG"]}


async def test_the_inventory_reports_names_only_and_checks_anew(tmp_path: Path) -> None:
    fake_bin(tmp_path / "bin", "kubectl")
    (tmp_path / "bin" / "notes.txt").write_text("not executable")
    env = {"PATH": str(tmp_path / "bin"), "TOKEN": "s3cret", "META_AGENT_WORKER_MCP": "github, jira"}
    inv = Inventory(env)
    first = (await inv.claim_fields())["capabilities"]
    assert first["bins"] == ["kubectl"] and "TOKEN" in first["env"] and "s3cret" not in str(first)
    assert first["mcp"] == ["github", "jira"] and first["environment"] is None
    inv.sent({"capabilities": first})
    assert await inv.claim_fields() == {"capabilities_digest": first["digest"]}  # unchanged: the digest
    assert inv.missing(["bin:kubectl", "env:TOKEN", "mcp:github", "environment:prod"]) == []
    os.unlink(tmp_path / "bin" / "kubectl")
    assert inv.missing(["bin:kubectl", "env:NOPE", "mcp:slack"]) == ["bin:kubectl", "env:NOPE", "mcp:slack"]
    labelled = Inventory({**env, "META_AGENT_WORKER_ENVIRONMENT": "staging"})
    assert labelled.missing(["environment:prod", "environment:staging"]) == ["environment:prod"]
