"""An agent's `provider` settings reach the wire: tool_choice, the content every chat
template needs, the key by the name of a variable, and a cost that is not guessed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.llm import load_litellm
from tests.fakes.llm_server import FakeLLM, text, tool_call
from tests.support import LiveServer
from tests.worker.llm_support import llm_agent, new_task, wait_status, worker_thread

FORCED = {"type": "function", "function": {"name": "bash"}}


@pytest.fixture(autouse=True, scope="module")
def _litellm_loaded() -> None:
    """Import litellm before any clock starts: on a loaded machine it takes 5-30 s."""
    load_litellm()


@pytest.fixture
def template_llm() -> Iterator[FakeLLM]:
    """A provider whose chat template reads `content` on every message (llama.cpp's)."""
    with FakeLLM(needs_content=True) as fake:
        yield fake


def test_tools_go_with_tool_choice_auto_by_default(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    llm.script(text("no tool needed"))
    with server.client() as c:
        llm_agent(c, tools=["bash"])
        llm_agent(c, name="bare")
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        wait_status(c, new_task(c), "completed")
        llm.script(text("fine"))
        wait_status(c, new_task(c, agent="bare"), "completed")
    assert llm.requests[0]["tool_choice"] == "auto"
    assert "tool_choice" not in llm.requests[1] and "tools" not in llm.requests[1]


def test_a_forced_first_tool_runs_and_the_next_turn_completes_on_a_strict_template(
    server: LiveServer, template_llm: FakeLLM, tmp_path: Path
) -> None:
    llm = template_llm
    llm.script(tool_call("bash", {"command": "echo hi"}, "call_1"), text("it said hi"))
    with server.client() as c:
        llm_agent(c, tools=["bash"], provider={"first_tool_choice": "bash", "tool_choice": "omit"})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        task = wait_status(c, new_task(c), "completed", "failed")
        assert task["status"] == "completed" and task["result"] == {"output": "it said hi"}, task
    first, second = llm.requests
    assert first["tool_choice"] == FORCED
    assert "tool_choice" not in second  # "omit": the server's default, not forced forever
    assistant = [m for m in second["messages"] if m["role"] == "assistant"]
    assert assistant[0]["content"] == "" and assistant[0]["tool_calls"][0]["id"] == "call_1"


def test_required_tool_choice_and_temperature_are_sent(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(tool_call("bash", {"command": "true"}), text("done"))
    with server.client() as c:
        llm_agent(c, tools=["bash"], provider={"first_tool_choice": "required", "temperature": 0.2})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        wait_status(c, new_task(c), "completed")
    assert [r.get("tool_choice") for r in llm.requests] == ["required", "auto"]
    assert llm.requests[0]["temperature"] == 0.2


def test_an_agents_own_server_gets_its_named_key_never_the_workers(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELS_TEST_API_KEY", "sk-agent-own")
    with FakeLLM() as own:
        own.script(text("from my own server"), text("keyless"))
        with server.client() as c:
            llm_agent(c, provider={"api_base": own.api_base, "api_key_env": "MODELS_TEST_API_KEY"})
            llm_agent(c, name="local", provider={"api_base": own.api_base})
            llm_agent(c, name="nokey", provider={"api_key_env": "MISSING_TEST_API_KEY"})
        with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
            task = wait_status(c, new_task(c), "completed", "failed")
            assert task["result"] == {"output": "from my own server"}, task
            wait_status(c, new_task(c, agent="local"), "completed")
            task = wait_status(c, new_task(c, agent="nokey"), "failed", "completed")
            assert task["error"]["code"] == "provider_key_missing", task["error"]
            assert "MISSING_TEST_API_KEY" in task["error"]["message"]
        auth = [h["authorization"] for h in own.headers]
    assert auth == ["Bearer sk-agent-own", "Bearer no-key"]  # not the worker's sk-test
    assert llm.requests == []


def test_a_priced_model_name_on_a_custom_server_costs_nothing_unless_priced(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(text("free", usage=(1000, 1000)), text("priced", usage=(1000, 1000)))
    with server.client() as c:
        llm_agent(c, model="openai/gpt-4o-mini", policy={"max_cost": 0.0001})
        llm_agent(
            c,
            name="priced",
            model="openai/gpt-4o-mini",
            provider={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        )
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        task = wait_status(c, new_task(c), "completed", "failed")
        assert task["usage"]["cost"] == 0.0, task
        task = wait_status(c, new_task(c, agent="priced"), "completed", "failed")
        assert task["usage"]["cost"] == pytest.approx(0.003), task
