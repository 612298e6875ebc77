"""MCP servers listed by an agent lend their tools to its model (official `mcp` client, stdio)."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest
import uvicorn

from tests.fakes.llm_server import FakeLLM, text, tool_call, tool_calls
from tests.support import ROOT, LiveServer, free_port, wait_for
from tests.worker.llm_support import llm_agent, new_task, tool_events, wait_status, worker_thread

CALC = {
    "name": "calc",
    "command": [sys.executable, str(ROOT / "tests" / "fakes" / "mcp_calc_server.py")],
    "env": {"GREETING": "hello"},
}


def test_mcp_server_tools_are_offered_and_called(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_AGENT_API_KEY", "worker-secret")  # as a worker process would have it
    llm.script(
        tool_calls([("calc__add", {"a": 2, "b": 40}, "call_add"), ("calc__whoami", {}, "call_who")]),
        text("2 + 40 = 42"),
    )
    with server.client() as c:
        llm_agent(c, tools=["bash"], mcp_servers=[CALC])
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c, prompt="add 2 and 40")
        task = wait_status(c, tid, "completed", "failed")
        assert task["status"] == "completed", task
        tools = tool_events(c, tid)
        assert tools["call_add"]["completed"]["status"] == "success"
    offered = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    assert set(offered) == {"bash", "calc__add", "calc__whoami"}
    assert offered["calc__add"]["parameters"]["required"] == ["a", "b"]
    results = {m["tool_call_id"]: m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"}
    assert results["call_add"] == "42"
    # The server got its own env and the worker's allow-listed variables, not its secrets.
    assert results["call_who"] == "api_key=none greeting=hello"


def test_unavailable_mcp_server_fails_clearly(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    with server.client() as c:
        llm_agent(c, mcp_servers=[{"name": "gone", "command": [str(tmp_path / "no-such-server")]}])
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "mcp_unavailable" and "'gone'" in task["error"]["message"]
    assert llm.requests == []


def test_mcp_server_over_streamable_http(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    from tests.fakes.mcp_calc_server import server as calc

    port = free_port()
    http = uvicorn.Server(uvicorn.Config(calc.streamable_http_app(), port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(http.serve()), daemon=True)
    thread.start()
    wait_for(lambda: http.started, 10, "the MCP server")
    try:
        llm.script(tool_call("web__add", {"a": 1, "b": 2}, "call_add"), text("3"))
        with server.client() as c:
            llm_agent(c, mcp_servers=[{"name": "web", "url": f"http://127.0.0.1:{port}/mcp"}])
        with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
            task = wait_status(c, new_task(c), "completed", "failed")
            assert task["status"] == "completed", task
        results = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
        assert results == [{"role": "tool", "tool_call_id": "call_add", "content": "3"}]
    finally:
        http.should_exit = True
        thread.join(10)
