"""A2A over real HTTP with a2a-sdk's own client, against a live control plane and a real
worker, on SQLite and PostgreSQL: the card, send, stream, get, cancel, the input-required
round trip, and keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from a2a.client import A2AClientError
from a2a.helpers.proto_helpers import get_artifact_text
from a2a.types.a2a_pb2 import (
    TASK_STATE_CANCELED,
    TASK_STATE_COMPLETED,
    TASK_STATE_INPUT_REQUIRED,
    TASK_STATE_SUBMITTED,
    CancelTaskRequest,
    GetTaskRequest,
)
from a2a.utils.errors import A2AError, InvalidParamsError, TaskNotCancelableError, TaskNotFoundError

from tests.a2a.conftest import Plane, a2a_client, collect, message, running_worker


def test_the_agent_card_lists_our_agents_as_skills_to_a_caller_with_a_key(plane: Plane) -> None:
    url = plane.server.url + "/.well-known/agent-card.json"
    card = httpx.get(url, headers={"authorization": f"Bearer {plane.viewer}"}).json()
    anonymous = httpx.get(url).json()

    assert {s["id"] for s in card["skills"]} == {"echo", "greet", "sh"}
    assert card["supportedInterfaces"][0]["url"] == plane.server.url + "/a2a"
    assert card["capabilities"]["streaming"] is True
    assert "bearer" in card["securitySchemes"]
    assert anonymous.get("skills", []) == [] and anonymous["name"] == "meta-agent"


async def test_message_send_runs_a_task_and_answers_its_result(plane: Plane, tmp_path: Path) -> None:
    async with (
        running_worker(plane, tmp_path / "ws"),
        a2a_client(plane, plane.operator, streaming=False) as client,
    ):
        (answer,) = await collect(client, message("hello there", skill="echo"))
        task = answer.task
        assert task.status.state == TASK_STATE_COMPLETED, task
        assert get_artifact_text(task.artifacts[0]).startswith("hello there")
        got = await client.get_task(GetTaskRequest(id=task.id))
    assert got.status.state == TASK_STATE_COMPLETED and got.id == task.id
    with plane.api() as c:
        ours = c.get(f"/tasks/{task.id}").json()
    assert ours["source"] == "a2a" and ours["agent"] == "echo" and ours["requested_by"] == "operator"
    assert ours["result"] == {"output": "hello there"}


async def test_message_stream_follows_the_task_to_its_result(plane: Plane, tmp_path: Path) -> None:
    script = "echo one; mkdir -p artifacts; echo report > artifacts/r.txt"
    async with (
        running_worker(plane, tmp_path / "ws"),
        a2a_client(plane, plane.operator, streaming=True) as client,
    ):
        items = await collect(client, message("run it", skill="sh", data={"script": script}))
    first, *rest = items
    assert first.HasField("task") and first.task.status.state == TASK_STATE_SUBMITTED
    states = [i.status_update.status.state for i in rest if i.HasField("status_update")]
    artifacts = [i.artifact_update.artifact for i in rest if i.HasField("artifact_update")]
    assert states[-1] == TASK_STATE_COMPLETED and rest[-1].HasField("status_update")
    names = [a.name for a in artifacts]
    assert "r.txt" in names and names[-1] == "result"
    file = next(a for a in artifacts if a.name == "r.txt")
    async with httpx.AsyncClient() as http:
        download = await http.get(file.parts[0].url, headers={"authorization": f"Bearer {plane.viewer}"})
    assert download.content == b"report\n"


async def test_input_required_round_trip(plane: Plane, tmp_path: Path) -> None:
    async with (
        running_worker(plane, tmp_path / "ws"),
        a2a_client(plane, plane.operator, streaming=True) as client,
    ):
        asked = await collect(client, message("say hi", skill="greet"))
        last = asked[-1].status_update
        assert last.status.state == TASK_STATE_INPUT_REQUIRED
        assert "whom to greet" in last.status.message.parts[0].text
        task_id = last.task_id

        resumed = await collect(client, message("Ada", task_id=task_id))

        assert resumed[0].task.id == task_id
        assert resumed[-1].status_update.status.state == TASK_STATE_COMPLETED
        result = next(i.artifact_update.artifact for i in resumed if i.HasField("artifact_update"))
        assert get_artifact_text(result).startswith("hello Ada")
        # A follow-up to a task that is not waiting for input is refused, clearly.
        with pytest.raises(InvalidParamsError, match="not waiting for input"):
            await collect(client, message("again", task_id=task_id))


async def test_cancel_a_waiting_task(plane: Plane) -> None:
    # No worker: the task waits in pending, and cancelling it takes effect at once.
    async with a2a_client(plane, plane.operator, streaming=False) as client:
        request = message("later", skill="echo")
        request.configuration.return_immediately = True
        (sent,) = await collect(client, request)
        assert sent.task.status.state == TASK_STATE_SUBMITTED
        cancelled = await client.cancel_task(CancelTaskRequest(id=sent.task.id))
        assert cancelled.status.state == TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=sent.task.id))  # already over
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_wrong_key_and_missing_scope_are_refused(plane: Plane) -> None:
    with pytest.raises(A2AClientError, match="401"):
        async with a2a_client(plane, "ma_000000000000_wrong", streaming=False) as client:
            await collect(client, message("x", skill="echo"))
    async with httpx.AsyncClient() as http:
        r = await http.post(
            plane.server.url + "/a2a",
            json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}},
        )
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    async with a2a_client(plane, plane.viewer, streaming=False) as client:
        with pytest.raises(A2AError, match="operator"):
            await collect(client, message("x", skill="echo"))
    with plane.api() as c:
        assert c.get("/tasks").json()["items"] == []


async def test_without_a_skill_the_error_names_the_skills(plane: Plane) -> None:
    async with a2a_client(plane, plane.operator, streaming=False) as client:
        with pytest.raises(A2AError, match="echo, greet, sh"):
            await collect(client, message("which one?"))


def test_the_v0_3_method_names_work_too(plane: Plane) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "messageId": "m1",
                "role": "user",
                "parts": [{"kind": "text", "text": "hi"}],
                "metadata": {"skill": "echo"},
            },
            "configuration": {"blocking": False},
        },
    }
    r = httpx.post(
        plane.server.url + "/a2a", json=body, headers={"authorization": f"Bearer {plane.operator}"}
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["result"]["id"]
    got = httpx.post(
        plane.server.url + "/a2a",
        json={"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": task_id}},
        headers={"authorization": f"Bearer {plane.viewer}"},
    ).json()
    # No worker runs here, and `blocking: false` answered at once: the task waits, submitted.
    assert got["result"]["status"]["state"] == "submitted" and got["result"]["id"] == task_id
    with plane.api() as c:
        assert c.get(f"/tasks/{task_id}").json()["source"] == "a2a"
