"""Streams that break after the provider's 200, as real OpenAI-compatible servers do
(llama-cpp-python raises after the status line): never an empty success."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.llm import load_litellm
from tests.cli.test_cli_standin import run
from tests.fakes.llm_server import FakeLLM, cut, dropped, empty, error, error_frame, text, tool_call
from tests.support import LiveServer
from tests.worker.llm_support import events, llm_agent, new_task, wait_status, worker_thread

OVERFLOW = "Requested tokens (9000) exceed context window of 4096"


@pytest.fixture(autouse=True, scope="module")
def _litellm_loaded() -> None:
    """Import litellm before any clock starts: on a loaded machine it takes 5-30 s."""
    load_litellm()


def test_200_then_nothing_is_retried_and_then_fails_empty_response(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(empty(), empty(), empty())
    with server.client() as c:
        llm_agent(c, provider={"retries": 2})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["status"] == "failed", task
        assert task["error"]["code"] == "empty_response", task["error"]
        assert "after 3 attempts" in task["error"]["message"]
        assert len(events(c, tid, "log")) == 2  # each retry said so
    assert len(llm.requests) == 3


def test_200_then_nothing_once_is_retried_to_the_real_answer(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(empty(), text("the real answer"))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "completed", "failed")
        assert task["result"] == {"output": "the real answer"}, task


def test_an_error_frame_about_the_context_fails_context_overflow_at_once(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(error_frame(OVERFLOW))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c, prompt="x" * 28_000)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "context_overflow", task["error"]
        assert "exceed context window" in task["error"]["message"]
    assert len(llm.requests) == 1  # retrying cannot make it fit


def test_a_silent_stream_is_asked_again_whole_and_its_400_says_context_overflow(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    # llama.cpp: streamed, a prompt over n_ctx is cut before the first chunk; not streamed,
    # the same request gets a 400 with the words.
    words = "This model's maximum context length is 2048 tokens. However, you requested 2247 tokens"
    llm.script(empty(), error(400, words, code="context_length_exceeded"), empty(), text("whole"))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        task = wait_status(c, new_task(c, prompt="x" * 9000), "failed", "completed")
        assert task["error"]["code"] == "context_overflow", task["error"]
        task = wait_status(c, new_task(c), "completed", "failed")
        assert task["result"] == {"output": "whole"}, task
        assert [e["data"]["text"] for e in events(c, task["id"], "message_delta")] == ["whole"]
    assert [bool(r.get("stream")) for r in llm.requests] == [True, False, True, False]


def test_other_error_frames_are_retried_then_fail_provider_error(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    frame = "Automatic streaming tool choice is not supported"
    llm.script(error_frame(frame, "half an"), error_frame(frame, "half an"))
    with server.client() as c:
        llm_agent(c, provider={"retries": 1})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "provider_error", task["error"]
        assert frame in task["error"]["message"]
    assert len(llm.requests) == 2


def test_a_stream_retried_mid_answer_tells_followers_to_drop_the_partial_text(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(dropped("a first try that breaks"), text("the clean answer"))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "completed", "failed")
        assert task["result"] == {"output": "the clean answer"}, task
        kinds = [e["kind"] for e in events(c, tid) if e["kind"].startswith("message")]
        # The partial text, the reset that voids it, then the retried answer.
        assert kinds[0] == "message_delta" and "message_reset" in kinds, kinds
        after = kinds[kinds.index("message_reset") + 1 :]
        assert "message_reset" not in after and after[-1] == "message"
        shown = "".join(
            e["data"]["text"]
            for e in events(c, tid)[[e["kind"] for e in events(c, tid)].index("message_reset") :]
            if e["kind"] == "message_delta"
        )
        assert shown == "the clean answer"
        printed = run(None, "execution", "logs", tid, url=server.url).output
    void, clean = printed.split("the text above is discarded")
    assert "a first try" in void and "the clean answer" in clean and "a first try" not in clean


def test_max_tokens_is_sent_and_a_cut_answer_fails_clearly_with_its_usage(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(text("short"), cut("and on and on", usage=(30, 50)))
    with server.client() as c:
        llm_agent(c, name="plain", queue="q1")
        llm_agent(c, name="capped", provider={"max_tokens": 50})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        first = new_task(c, agent="plain")
        wait_status(c, first, "completed")
        tid = new_task(c, agent="capped")
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "max_tokens", task["error"]
        assert "max_tokens=50" in task["error"]["message"]
        assert task["usage"]["completion_tokens"] == 50  # a failed task keeps what it used
        assert [e["data"]["text"] for e in events(c, tid, "message")] == ["and on and on"]
    assert llm.requests[0]["max_tokens"] == 4096  # the default: a rambling model stops
    assert llm.requests[1]["max_tokens"] == 50


def test_a_failed_task_records_the_usage_of_its_earlier_turns(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(tool_call("bash", {"command": "true"}), error(401))
    with server.client() as c:
        llm_agent(c, tools=["bash"])
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "provider_auth_failed"
        assert task["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "cost": 0.0, "steps": 1}
