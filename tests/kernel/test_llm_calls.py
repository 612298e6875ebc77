"""The meta agent's model calls against the fake provider over HTTP: its META_AGENT_MODEL_*
settings reach the wire, a broken stream is an error (never an empty `done`), and each
litellm call is logged once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from kernel.llm import load_litellm
from tests.fakes.llm_server import ChatLLM, FakeLLM, dropped, empty, text, tool_call
from tests.meta_agent.test_agent_chat import chat, of


@pytest.fixture(autouse=True, scope="module")
def _litellm_loaded() -> None:
    """Import litellm before any clock starts: on a loaded machine it takes 5-30 s."""
    load_litellm()


async def test_a_forced_first_tool_then_a_plain_turn_on_a_strict_template(
    server_factory: Any, db_url: str
) -> None:
    with ChatLLM(needs_content=True) as llm:
        srv = server_factory(
            db_url,
            model="openai/fake",
            llm_api_base=llm.api_base,
            llm_api_key="sk-test",
            model_first_tool_choice="list_agents",
            model_tool_choice="omit",
            model_max_tokens=300,
        )
        llm.play(tool_call("list_agents", {}), text("There are no agents yet."))
        frames = await chat(srv.url, {"message": "which agents are there?"})
        [done] = of(frames, "done")
        assert done["reply"] == "There are no agents yet.", frames
        assert not of(frames, "error")
        first, second = llm.requests
    assert first["tool_choice"] == {"type": "function", "function": {"name": "list_agents"}}
    assert "tool_choice" not in second and first["max_tokens"] == 300
    assert [m["content"] for m in second["messages"] if m["role"] == "assistant"] == [""]


async def test_200_then_nothing_is_an_error_in_the_chat_not_an_empty_reply(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    srv = server_factory(
        db_url, model="openai/fake", llm_api_base=llm.api_base, llm_api_key="sk-test", model_retries=1
    )
    llm.play(empty(), empty())
    frames = await chat(srv.url, {"message": "hello"})
    [err] = of(frames, "error")
    assert err["code"] == "empty_response", err
    assert next(f["message"] for f in of(frames, "log")).startswith("model call failed")
    assert len(llm.requests) == 2


async def test_a_local_server_needs_no_key_and_a_missing_one_is_not_retried(
    server_factory: Any, db_url: str, llm: ChatLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = server_factory(db_url, model="openai/fake", model_api_base=llm.api_base)
    llm.play(text("no key needed"))
    [done] = of(await chat(srv.url, {"message": "hello"}), "done")
    assert done["reply"] == "no key needed" and llm.headers[0]["authorization"] == "Bearer no-key"
    # Without a base, the openai client itself refuses to send: a clear code, no retries.
    bare = server_factory(db_url, model="openai/fake", model_retries=3)
    [err] = of(await chat(bare.url, {"message": "hello"}), "error")
    assert err["code"] == "provider_auth_failed", err
    assert len(llm.requests) == 1


def test_each_litellm_call_is_logged_once() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from kernel import llm, logs
        logs.setup("text", "INFO")
        async def main():
            cfg = llm.ProviderConfig("openai/fake", api_base=sys.argv[1], api_key="sk-test")
            await llm.complete(cfg, [{"role": "user", "content": "hi"}], [], on_delta=print, on_log=print)
            await llm.close_clients()
        asyncio.run(main())
        """
    )
    with FakeLLM() as fake:
        fake.script(text("hello"))
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        done = subprocess.run(
            [sys.executable, "-c", script, fake.api_base],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    # litellm's own handler wrote its copy to stdout (where `--json` output goes).
    both = done.stdout + done.stderr
    assert both.count("completion() model=") == 1, both
    assert done.stderr.count(" INFO LiteLLM: ") == 1, both  # our formatter: it masks secrets


async def test_a_reply_retried_mid_stream_tells_the_chat_to_drop_the_partial_text(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    srv = server_factory(
        db_url, model="openai/fake", llm_api_base=llm.api_base, llm_api_key="sk-test", model_retries=2
    )
    llm.play(dropped("half an answer that breaks"), text("the whole answer"))
    frames = await chat(srv.url, {"message": "hello"})
    kinds = [kind for kind, _ in frames]
    assert "text_reset" in kinds, kinds
    # What a client shows: the text since the last reset, which is the retried answer alone.
    shown = ""
    for kind, data in frames:
        shown = "" if kind == "text_reset" else shown + (data["text"] if kind == "text" else "")
    assert shown == "the whole answer"
    [done] = of(frames, "done")
    assert done["reply"] == "the whole answer"
