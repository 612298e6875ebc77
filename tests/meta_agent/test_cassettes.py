"""The meta agent's main conversations, replayed from recorded provider exchanges (vcrpy).

Replayed by default (`--record-mode=none`): no network, no key. Everything but the model is
real and live: the control plane, the MCP tools (in-process official client), a worker
running the task. Only the HTTP exchanges with the provider come from
tests/meta_agent/cassettes/test_cassettes/. Authorization and other secret headers are not
recorded. Requests are matched on their shape, not on task ids or timestamps
(tests/meta_agent/cassette_support.py).

litellm sends `openai/...` calls through aiohttp (its default transport), so only vcrpy's
aiohttp patcher is on: the control-plane traffic (httpx) is never touched. Each test checks
that every recorded exchange was played (a transport change would make it miss).

Re-record against a real provider (the prompts ask for what the scenario needs):

    META_AGENT_MODEL=openai/gpt-4.1-mini OPENAI_API_KEY=sk-... \\
        .venv/bin/pytest tests/meta_agent/test_cassettes.py --record-mode=rewrite

Without META_AGENT_MODEL, recording runs against the fake provider (tests/fakes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vcr.cassette import Cassette

from kernel.llm import ProviderConfig, close_clients
from meta_agent.agent import MetaAgent, chat_backend
from tests.fakes.llm_server import ChatLLM, text, tool_call
from tests.meta_agent.cassette_support import IDS, MATCHER
from tests.meta_agent.test_agent_chat import GREET, last_task, running_worker
from tests.support import LiveServer

# Same recording hygiene as the worker's cassettes: model calls only, no secrets kept.
from tests.worker.test_llm_cassettes import SECRET_HEADERS, _only_model_calls, _scrub_response

REAL_MODEL = os.environ.get("META_AGENT_MODEL")

DISKS = {
    "name": "disk-report",
    "description": "Reports how full the disks of the build hosts are (read-only)",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "print('build hosts: /data is 42% full')"],
}


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": SECRET_HEADERS,
        "decode_compressed_response": True,
        "match_on": ["method", "path", MATCHER],
        "before_record_request": _only_model_calls,
        "before_record_response": _scrub_response,
        # litellm's transport; the control plane (httpx, httpx2) stays untouched.
        "skip_patchers": (
            "httpx",
            "httpx2",
            "requests",
            "urllib3",
            "httplib",
            "tornado",
            "boto3",
            "httplib2",
        ),
    }


@pytest.fixture
def replay_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Replayed responses get this run's task ids (see cassette_support)."""
    IDS.reset()
    play = Cassette.play_response

    def play_with_live_ids(self: Cassette, request: Any) -> Any:
        return IDS.rewrite(play(self, request))

    monkeypatch.setattr(Cassette, "play_response", play_with_live_ids)
    yield
    IDS.reset()


class Provider:
    def __init__(self, model: str, api_base: str | None, api_key: str | None, fake: ChatLLM | None) -> None:
        self.model, self.api_base, self.api_key, self.fake = model, api_base, api_key, fake

    def play(self, *steps: Any) -> None:
        """What the fake answers when recording without a real provider."""
        if self.fake is not None:
            self.fake.play(*steps)

    def config(self) -> ProviderConfig:
        return ProviderConfig(self.model, api_base=self.api_base, api_key=self.api_key)


@pytest.fixture
def provider(record_mode: str, replay_ids: None) -> Iterator[Provider]:
    if record_mode == "none":  # replay: the address is never contacted
        yield Provider("openai/gpt-4.1-mini", "http://127.0.0.1:9/v1", "sk-replay", None)
    elif REAL_MODEL:
        yield Provider(REAL_MODEL, os.environ.get("META_AGENT_LLM_API_BASE"), None, None)
    else:
        with ChatLLM() as fake:
            yield Provider("openai/gpt-4.1-mini", fake.api_base, "sk-test", fake)


@pytest.fixture
def plane(server_factory: Any, sqlite_template: Path, tmp_path: Path) -> LiveServer:
    # SQLite only: these tests are about the conversation, not the store (one cassette each).
    db = tmp_path / "meta-agent.db"
    shutil.copy(sqlite_template, db)
    srv: LiveServer = server_factory(f"sqlite:///{db}")
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": "q1", "description": "build hosts"}).status_code == 201
        for agent in (DISKS, GREET):
            assert c.post("/agents", json=agent).status_code == 201
    return srv


async def converse(
    plane: LiveServer, provider: Provider, message: str
) -> tuple[MetaAgent, list[dict[str, Any]]]:
    backend = chat_backend(plane.url, None, source="cli", requested_by="cassette")
    agent = MetaAgent(provider.config(), backend)
    events: list[dict[str, Any]] = []
    try:
        await agent.turn([], message, events.append)
    finally:
        await close_clients()
    return agent, events


def check_cassette(cassette: Cassette, record_mode: str) -> None:
    assert len(cassette) > 0, "no provider exchange was recorded or replayed"
    if record_mode == "none":
        assert cassette.all_played and cassette.play_count == len(cassette)


@pytest.mark.vcr
async def test_plans_creates_follows_and_reports(
    plane: LiveServer, provider: Provider, vcr: Cassette, record_mode: str, tmp_path: Path
) -> None:
    provider.play(
        tool_call("list_agents", {}),
        tool_call("list_queues", {}),
        tool_call(
            "create_task",
            {"agent": "disk-report", "queue": "q1", "prompt": "Report how full the build hosts' disks are."},
            say="Plan: run disk-report on q1 to check the build hosts' disks. Risk: read-only.",
        ),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(f"The disk report finished: {last_task(body)['result']['output'].strip()}."),
    )
    async with running_worker(plane.url, tmp_path / "ws"):
        agent, events = await converse(
            plane, provider, "How full are the disks on the build hosts? Run the disk report and tell me."
        )

    check_cassette(vcr, record_mode)
    calls = [e["name"] for e in events if e["type"] == "tool_call"]
    assert "create_task" in calls and "stream_task" in calls
    assert calls.index("create_task") < calls.index("stream_task")
    errors = [e for e in events if e["type"] == "tool_result" and e["is_error"]]
    assert not errors, [e["text"] for e in errors]
    [task_id] = agent.task_ids
    with plane.client() as c:
        task = c.get(f"/tasks/{task_id}").json()
    assert task["agent"] == "disk-report" and task["status"] == "completed"
    assert task["source"] == "cli" and task["requested_by"] == "cassette"
    reply = "".join(e["text"] for e in events if e["type"] == "text")
    assert "42%" in reply


@pytest.mark.vcr
async def test_answers_a_plain_question_without_creating_work(
    plane: LiveServer, provider: Provider, vcr: Cassette, record_mode: str
) -> None:
    provider.play(
        tool_call("list_agents", {}),
        lambda body: text("You can run: " + ", ".join(a["name"] for a in last_agents(body)) + "."),
    )

    agent, events = await converse(
        plane, provider, "Which agents can you run? Only list their names; do not start anything."
    )

    check_cassette(vcr, record_mode)
    calls = [e["name"] for e in events if e["type"] == "tool_call"]
    assert calls and set(calls) <= {"list_agents", "list_queues", "list_tasks", "get_task"}
    assert agent.task_ids == []
    with plane.client() as c:
        assert c.get("/tasks").json()["items"] == []
    reply = "".join(e["text"] for e in events if e["type"] == "text")
    assert "disk-report" in reply and "greet" in reply


def last_agents(body: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.meta_agent.test_agent_chat import tool_results

    return list(tool_results(body)[-1]["agents"])
