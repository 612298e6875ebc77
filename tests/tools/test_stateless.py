"""`/mcp` without sessions (META_AGENT_MCP_STATELESS): no Mcp-Session-Id is handed out, every
tool works on both protocol versions, and what a 2025-11-25 client loses is the back-channel:
stream_task returns the task's question instead of asking through the client's form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.settings import Settings
from tests.support import LiveServer
from tests.tools.conftest import MODES, Connect, running_worker, setup_catalog
from tests.tools.helpers import Progress, ok
from tests.tools.test_elicitation import User
from tools.http import stateless


def test_the_default_follows_the_store() -> None:
    assert stateless(Settings(database_url="postgresql://db.internal/meta_agent")) is True
    assert stateless(Settings(database_url="sqlite:///meta-agent.db")) is False
    assert stateless(Settings(database_url="postgresql://db/x", mcp_stateless=False)) is False
    assert stateless(Settings(database_url="sqlite:///x.db", mcp_stateless=True)) is True


@pytest.fixture
def stateless_plane(server_factory: Any, db_url: str) -> LiveServer:
    srv: LiveServer = server_factory(db_url, mcp_stateless=True)
    with srv.client() as c:
        setup_catalog(c)
    return srv


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("stateless_http", [True, False])
def test_a_stateless_endpoint_hands_out_no_session(
    server_factory: Any, db_url: str, stateless_http: bool
) -> None:
    srv: LiveServer = server_factory(db_url, mcp_stateless=stateless_http)
    headers = {"Accept": "application/json, text/event-stream"}
    r = httpx.post(srv.url + "/mcp", json=INITIALIZE, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert ("mcp-session-id" in r.headers) is not stateless_http


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_a_question_on_a_stateless_endpoint(
    mode: str, stateless_plane: LiveServer, connect: Connect, tmp_path: Path
) -> None:
    """2026-07-28: the client's form still answers within the call (the state rides in the
    sealed request_state). 2025-11-25: no back-channel, so the question comes back and the
    assistant relays the answer; progress arrives all the same."""
    user = User()
    progress = Progress()
    async with (
        running_worker(stateless_plane.url, tmp_path / "ws"),
        connect("http", stateless_plane.url, mode=mode, elicitation_callback=user) as c,
    ):
        tid = (await ok(c, "create_task", agent="greet", prompt="say hello"))["id"]
        first = await ok(c, "stream_task", progress, task_id=tid, timeout=30)
        if mode == "auto":
            assert first["outcome"] == "finished" and first["answers"] == ["Ada"], first
            assert len(user.asked) == 1
            done = first
        else:
            assert first["outcome"] == "needs_input" and first["question"]["key"] == "who", first
            assert "respond_to_task" in first["next_step"] and user.asked == []
            await ok(c, "respond_to_task", task_id=tid, answer="Ada")
            done = await ok(c, "stream_task", progress, task_id=tid, after=first["last_seq"], timeout=30)
    assert done["status"] == "completed" and done["result"]["output"] == "hello Ada\n"
    assert progress.seqs == list(range(1, done["last_seq"] + 1))
    assert "status: requires_input" in progress.messages and "hello Ada" in progress.messages
