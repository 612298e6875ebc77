"""The `llm` runtime end to end: real control plane, in-process worker, fake provider over HTTP."""

from __future__ import annotations

from pathlib import Path

from sdk.client import ControlPlaneClient
from tests.fakes.llm_server import FakeLLM, Gate, text, tool_call, tool_calls
from tests.support import LiveServer
from tests.worker.llm_support import events, llm_agent, new_task, tool_events, wait_status, worker_thread

ANSWER = "All good: the host answered hello and the control plane is healthy, report saved."


def test_llm_task_streams_runs_tools_saves_artifact_and_completes(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    gate = Gate()
    llm.script(
        tool_calls(
            [
                ("bash", {"command": "echo hello-from-bash; echo oops >&2"}, "call_bash"),
                ("http_request", {"url": server.url + "/healthz"}, "call_http"),
            ],
            say="Let me look.",
        ),
        tool_call("save_artifact", {"name": "report.md", "content": "# Report\nok\n"}, "call_art"),
        text(ANSWER, usage=(40, 20), gate=gate),
    )
    with server.client() as c:
        llm_agent(
            c,
            tools=["bash", "http_request", "save_artifact"],
            instructions="You are a careful operator.",
            # The control plane is on loopback: refused to an agent unless its policy names it.
            policy={"http_allow": ["127.0.0.1"]},
        )
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c, prompt="check the host", parameters={"host": "db1"})

        # A live follower (SSE, through the SDK) sees deltas while the model still generates.
        seen: list[str] = []
        with ControlPlaneClient(url=server.url) as sdk:
            for ev in sdk.executions.stream(tid):
                if ev.kind == "message_delta" and ANSWER.startswith(ev.data["text"]):
                    seen.append(ev.data["text"])
                    break
        assert seen
        gate.wait_reached()
        assert c.get(f"/tasks/{tid}").json()["phase"] == "executing"
        assert "".join(seen) in ANSWER and "".join(seen) != ANSWER  # the rest is still held
        gate.open()

        task = wait_status(c, tid, "completed", "failed")
        assert task["status"] == "completed", task
        assert task["result"] == {"output": ANSWER}
        assert task["usage"]["prompt_tokens"] == 12 + 12 + 40
        assert task["usage"]["completion_tokens"] == 7 + 7 + 20
        assert task["usage"]["steps"] == 3

        tools = tool_events(c, tid)
        assert set(tools) == {"call_bash", "call_http", "call_art"}
        bash = tools["call_bash"]
        assert bash["started"]["name"] == "bash" and bash["started"]["arguments"]["command"].startswith(
            "echo"
        )
        assert "hello-from-bash" in "".join(bash["output"])
        assert bash["completed"]["status"] == "success" and bash["completed"]["duration_ms"] >= 0
        assert tools["call_http"]["completed"]["status"] == "success"
        assert "HTTP 200" in tools["call_http"]["completed"]["output"]
        assert tools["call_art"]["completed"]["status"] == "success"
        assert c.get(f"/tasks/{tid}/artifacts/report.md").content == b"# Report\nok\n"

        evs = events(c, tid)
        kinds = [e["kind"] for e in evs]
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        deltas = [e["data"]["text"] for e in evs if e["kind"] == "message_delta"]
        assert "".join(deltas) == "Let me look." + ANSWER
        assert len(deltas) < len(ANSWER.split(" "))  # coalesced, not one event per token
        messages = [e["data"] for e in evs if e["kind"] == "message"]
        assert [m["text"] for m in messages] == ["Let me look.", "", ANSWER]
        assert kinds.count("usage") == 3
        assert evs[-1]["kind"] == "status" and evs[-1]["data"]["status"] == "completed"

    # What the model was sent: instructions, prompt with parameters, tools, then tool results.
    first, second = llm.requests[0], llm.requests[1]
    assert first["model"] == "fake" and first["stream"] is True
    assert first["messages"][0] == {"role": "system", "content": "You are a careful operator."}
    assert (
        "check the host" in first["messages"][1]["content"]
        and '"host": "db1"' in first["messages"][1]["content"]
    )
    assert {t["function"]["name"] for t in first["tools"]} == {"bash", "http_request", "save_artifact"}
    results = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert results["call_bash"].startswith("exit code 0") and "hello-from-bash" in results["call_bash"]
    assert "oops" in results["call_bash"]
    assert results["call_http"].startswith("HTTP 200")
    assert llm.headers[0]["authorization"] == "Bearer sk-test"
