"""Recorded provider exchanges (vcrpy cassettes) of the main `llm` scenarios.

Replayed by default (`--record-mode=none`): no network, no key. The runtime runs for real
(litellm, streaming, tools); only the HTTP exchange with the provider comes from
tests/cassettes/test_llm_cassettes/. Secrets are filtered out of what is recorded.

Re-record against a real provider when a key is at hand (the scenarios ask for the tool
calls they need, so a real model answers them in the same shape):

    OPENAI_API_KEY=sk-... META_AGENT_TEST_LLM_MODEL=openai/gpt-4o-mini \\
        .venv/bin/pytest tests/worker/test_llm_cassettes.py --record-mode=rewrite

Without META_AGENT_TEST_LLM_MODEL, recording runs against the fake provider (tests/fakes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLM, text, tool_call
from tests.worker.helpers import make_ctx
from worker.runtime import InputRequested
from worker.runtimes.llm import LlmRuntime

REAL_MODEL = os.environ.get("META_AGENT_TEST_LLM_MODEL")
MODEL = REAL_MODEL or "openai/gpt-4o-mini"
SECRET_HEADERS = ["authorization", "api-key", "x-api-key", "openai-organization", "openai-project", "cookie"]


def _only_model_calls(request: Any) -> Any:
    return request if request.path.endswith("/chat/completions") else None


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in ("set-cookie", "openai-organization", "openai-project", "x-request-id"):
            del headers[name]
    return response


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": SECRET_HEADERS,
        "decode_compressed_response": True,
        # Host and port differ between a real provider, the fake and replay; the body (model,
        # messages, tools) is what identifies an exchange.
        "match_on": ["method", "path", "body"],
        "before_record_request": _only_model_calls,
        "before_record_response": _scrub_response,
    }


class Provider:
    def __init__(self, api_base: str | None, api_key: str | None, fake: FakeLLM | None) -> None:
        self.api_base, self.api_key, self.fake = api_base, api_key, fake

    def script(self, *replies: Any) -> None:
        """What the fake answers when recording without a real provider."""
        if self.fake is not None:
            self.fake.script(*replies)

    def runtime(self) -> LlmRuntime:
        return LlmRuntime(api_base=self.api_base, api_key=self.api_key, retries=0)


@pytest.fixture
def provider(record_mode: str) -> Iterator[Provider]:
    if record_mode == "none":  # replay as the provider itself (its default address, never contacted)
        yield Provider(None, "sk-replay", None)
    elif REAL_MODEL:
        yield Provider(os.environ.get("META_AGENT_TEST_LLM_API_BASE"), None, None)
    else:
        with FakeLLM() as fake:
            yield Provider(fake.api_base, "sk-test", fake)


def agent(**fields: Any) -> dict[str, Any]:
    return {"name": "cassette", "runtime": "llm", "model": MODEL, **fields}


@pytest.mark.vcr
async def test_plain_answer_streams_with_usage(provider: Provider, tmp_path: Path) -> None:
    provider.script(text("Paris is the capital of France."))
    ctx, rec = make_ctx(
        tmp_path / "ws", None, prompt="What is the capital of France? Answer in one short sentence."
    )
    ctx.agent = agent(instructions="Be brief.")
    runtime = provider.runtime()
    try:
        outcome = await runtime.run(ctx)
    finally:
        await runtime.aclose()
    assert "Paris" in outcome.result["output"]
    deltas = "".join(d["text"] for k, d in rec.events if k == "message_delta")
    assert deltas == outcome.result["output"]
    assert outcome.usage and outcome.usage["prompt_tokens"] > 0 and outcome.usage["completion_tokens"] > 0
    if provider.api_base is None:  # the provider itself: priced by litellm's bundled cost map
        assert outcome.usage["cost"] > 0
    else:  # the model's name on another server (the fake) says nothing about its price
        assert outcome.usage["cost"] == 0
    assert [d for k, d in rec.events if k == "usage"][-1]["cost"] == outcome.usage["cost"]


@pytest.mark.vcr
async def test_bash_tool_round_trip(provider: Provider, tmp_path: Path) -> None:
    provider.script(
        tool_call("bash", {"command": "echo cassette-ok"}), text("The command printed cassette-ok.")
    )
    ctx, rec = make_ctx(
        tmp_path / "ws",
        None,
        prompt="Run the shell command `echo cassette-ok` with the bash tool, then tell me what it printed.",
    )
    ctx.agent = agent(tools=["bash"])
    runtime = provider.runtime()
    try:
        outcome = await runtime.run(ctx)
    finally:
        await runtime.aclose()
    completed = [d for k, d in rec.events if k == "tool_completed"]
    assert [d["name"] for d in completed] == ["bash"] and completed[0]["status"] == "success"
    assert "cassette-ok" in completed[0]["output"]
    assert "cassette-ok" in outcome.result["output"]


@pytest.mark.vcr
async def test_ask_user_then_resume_with_the_answer(provider: Provider, tmp_path: Path) -> None:
    provider.script(
        tool_call("ask_user", {"question": "Which environment?", "choices": ["staging", "production"]}),
        text("Deploying to staging."),
    )
    prompt = (
        "Deploy the app. You must first ask the user with the ask_user tool which environment to use "
        "(choices: staging, production), then answer with one sentence naming it."
    )
    ctx, _ = make_ctx(tmp_path / "ws", None, prompt=prompt)
    ctx.agent = agent(tools=["ask_user"])
    runtime = provider.runtime()
    try:
        with pytest.raises(InputRequested) as asked:
            await runtime.run(ctx)
        assert asked.value.key and asked.value.checkpoint
        resumed, _ = make_ctx(tmp_path / "ws", None, prompt=prompt, inputs={asked.value.key: "staging"})
        resumed.agent, resumed.checkpoint = ctx.agent, asked.value.checkpoint
        outcome = await runtime.run(resumed)
    finally:
        await runtime.aclose()
    assert "staging" in outcome.result["output"].lower()
