"""Helpers for the `llm` runtime tests: the fake provider, an in-process worker in its own
thread (its own event loop, so tests stay plain blocking code), and catalog shortcuts."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sdk.client import AsyncControlPlaneClient
from tests.fakes.llm_server import FakeLLM
from tests.support import spawn, wait_for
from worker.main import Worker
from worker.runtimes.llm import LlmRuntime

MODEL = "openai/fake"


@contextmanager
def worker_thread(
    url: str, llm: FakeLLM, workspace: Path, *, queue: str = "q1", concurrency: int = 1
) -> Iterator[Worker]:
    """A `Worker` with an `llm` runtime pointed at the fake, running until the block ends."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        async with AsyncControlPlaneClient(url=url, api_key="", timeout=10.0, source="worker") as client:
            runtime = LlmRuntime(api_base=llm.api_base, api_key="sk-test", backoff=0.05)
            worker = Worker(
                client,
                queue,
                concurrency=concurrency,
                workspace_root=workspace,
                heartbeat_interval=0.2,
                grace_seconds=0,
                claim_wait=1,
                runtimes={"llm": runtime},
            )
            holder["worker"] = worker
            ready.set()
            await worker.run(stop)

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by the test through holder["error"]
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(15), "the worker did not start"
    if "error" in holder:
        raise holder["error"]
    try:
        yield holder["worker"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(20)
        assert not thread.is_alive(), "the worker did not stop"
        if "error" in holder:
            raise holder["error"]


def llm_agent(c: httpx.Client, name: str = "ops", *, queue: str = "q1", **fields: Any) -> dict[str, Any]:
    if c.get(f"/worker-queues/{queue}").status_code == 404:
        assert c.post("/worker-queues", json={"name": queue}).status_code == 201
    body = {"name": name, "runtime": "llm", "model": MODEL, "default_queue": queue, **fields}
    r = c.post("/agents", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def new_task(c: httpx.Client, agent: str = "ops", prompt: str = "check the host", **extra: Any) -> str:
    r = c.post("/tasks", json={"agent": agent, "prompt": prompt, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def events(c: httpx.Client, tid: str, kind: str | None = None) -> list[dict[str, Any]]:
    items = c.get(f"/tasks/{tid}/events").json()["items"]
    return [e for e in items if kind is None or e["kind"] == kind]


def wait_status(c: httpx.Client, tid: str, *want: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        t = c.get(f"/tasks/{tid}").json()
        return t if t["status"] in want else None

    return wait_for(check, timeout, f"task {tid} to be {'/'.join(want)}")


def tool_events(c: httpx.Client, tid: str) -> dict[str, dict[str, Any]]:
    """tool_call_id -> {started, completed, output: [chunks]}"""
    out: dict[str, dict[str, Any]] = {}
    for e in events(c, tid):
        if e["kind"] in ("tool_started", "tool_completed", "tool_output"):
            slot = out.setdefault(e["data"]["tool_call_id"], {"output": []})
            if e["kind"] == "tool_output":
                slot["output"].append(e["data"]["chunk"])
            else:
                slot[e["kind"].removeprefix("tool_")] = e["data"]
    return out


def spawn_worker(url: str, llm: FakeLLM, ws: Path, queue: str = "q1") -> subprocess.Popen[bytes]:
    """`meta-agent worker start` as a separate process, its provider set through the CLI's env."""
    return spawn(
        ["-m", "cli.main", "worker", "start", "--queue", queue, "--concurrency", "1"],
        log=ws.parent / f"{ws.name}.log",
        META_AGENT_URL=url,
        META_AGENT_WORKSPACE_ROOT=str(ws),
        META_AGENT_WORKER_GRACE_SECONDS="1",
        META_AGENT_LLM_API_BASE=llm.api_base,
        META_AGENT_LLM_API_KEY="sk-test",
    )


def running_workers(c: httpx.Client, tid: str) -> list[str]:
    return [e["data"]["worker_id"] for e in events(c, tid, "status") if e["data"]["status"] == "running"]
