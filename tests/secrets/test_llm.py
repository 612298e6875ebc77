"""An `llm` agent's secrets: its provider key by the secret's name (`provider.api_key_env`),
and the `bash` tool's environment; the tool's output is masked (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from kernel.llm import load_litellm
from tests.fakes.llm_server import FakeLLM, text, tool_call
from tests.secrets.helpers import KEY, fresh
from tests.worker.llm_support import events, llm_agent, new_task, wait_status, worker_thread


@pytest.fixture(autouse=True, scope="module")
def _litellm_loaded() -> None:
    """Import litellm before any clock starts: on a loaded machine it takes 5-30 s."""
    load_litellm()


def test_the_provider_key_and_the_bash_tool_get_the_agents_secrets(
    server_factory: Any, db_url: str, tmp_path: Path
) -> None:
    server = server_factory(db_url, secret_key=KEY)
    provider_key, tool_token = fresh("provider"), fresh("tool")
    # The last line reaches the pipe in two writes, the value cut between them, so the worker
    # reads it in two pieces: the mask must see the line whole.
    script = (
        'echo "token $TOOL_TOKEN"; printf %s "$TOOL_TOKEN" | sha256sum | cut -c1-64; '
        'printf "cut %s" "${TOOL_TOKEN:0:10}"; sleep 0.3; printf "%s\\n" "${TOOL_TOKEN:10}"'
    )
    with FakeLLM() as own, FakeLLM() as workers:
        own.script(tool_call("bash", {"command": script}), text("done"))
        with server.client() as c:
            c.put("/secrets/MODELS_API_KEY", json={"value": provider_key})
            c.put("/secrets/TOOL_TOKEN", json={"value": tool_token})
            llm_agent(
                c,
                tools=["bash"],
                secrets=["MODELS_API_KEY", "TOOL_TOKEN"],
                provider={"api_base": own.api_base, "api_key_env": "MODELS_API_KEY"},
            )
        with server.client() as c, worker_thread(server.url, workers, tmp_path / "ws"):
            tid = new_task(c)
            task = wait_status(c, tid, "completed", "failed")
            output = "".join(e["data"].get("chunk", "") for e in events(c, tid, "tool_output"))
            stored = c.get(f"/tasks/{tid}/events").text + c.get(f"/tasks/{tid}").text
        auth = [h["authorization"] for h in own.headers]

    assert task["status"] == "completed", task
    assert auth == [f"Bearer {provider_key}"] * 2 and workers.requests == []
    assert output.splitlines() == [
        "token [redacted]",
        hashlib.sha256(tool_token.encode()).hexdigest(),
        "cut [redacted]",
    ]
    assert tool_token not in stored and provider_key not in stored
