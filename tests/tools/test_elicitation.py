"""stream_task asks the user through the client (MCP elicitation) when the task needs input:
on 2026-07-28 by returning an InputRequiredResult the client answers and retries, on
2025-11-25 over the session's back-channel. Either way the task resumes within one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import types
from mcp.server.elicitation import render_elicitation_schema

from tests.support import LiveServer
from tests.tools.conftest import MODES, TRANSPORTS, Connect, running_worker
from tests.tools.helpers import Progress, ok
from tools.models import Question
from tools.stream import answer_model


class User:
    """The client's elicitation callback: records each question, answers as told."""

    def __init__(self, action: str = "accept", answer: str = "Ada") -> None:
        self.action, self.answer = action, answer
        self.asked: list[types.ElicitRequestParams] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params)
        content = {"answer": self.answer} if self.action == "accept" else None
        return types.ElicitResult(action=self.action, content=content)  # type: ignore[arg-type]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_user_answers_through_the_client_and_the_task_completes(
    transport: str, mode: str, sqlite_plane: LiveServer, connect: Connect, tmp_path: Path
) -> None:
    user = User()
    progress = Progress()
    async with (
        running_worker(sqlite_plane.url, tmp_path / "ws"),
        connect(transport, sqlite_plane.url, mode=mode, elicitation_callback=user) as c,
    ):
        tid = (await ok(c, "create_task", agent="greet", prompt="say hello"))["id"]
        done = await ok(c, "stream_task", progress, task_id=tid, timeout=30)
    assert done["outcome"] == "finished" and done["status"] == "completed", done
    assert done["answers"] == ["Ada"] and done["result"]["output"] == "hello Ada\n"
    assert [p.message for p in user.asked] == ["Value for parameter who? (whom to greet)"]
    schema = user.asked[0].requested_schema
    assert schema["required"] == ["answer"] and schema["properties"]["answer"]["type"] == "string"
    texts = [e["text"] for e in done["events"]]
    assert "status: requires_input" in texts and texts[-2:] == ["hello Ada", "status: completed"]
    assert "answer received (who)" in progress.messages and "hello Ada" in progress.messages


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_a_declined_form_returns_the_question(
    mode: str, sqlite_plane: LiveServer, connect: Connect, tmp_path: Path
) -> None:
    user = User(action="decline")
    async with (
        running_worker(sqlite_plane.url, tmp_path / "ws"),
        connect("http", sqlite_plane.url, mode=mode, elicitation_callback=user) as c,
    ):
        tid = (await ok(c, "create_task", agent="greet", prompt="say hello"))["id"]
        waiting = await ok(c, "stream_task", task_id=tid, timeout=30)
        assert waiting["outcome"] == "needs_input" and waiting["question"]["key"] == "who"
        assert "did not answer" in waiting["next_step"] and waiting["answers"] == []
        assert len(user.asked) == 1
        # The assistant can still relay the answer itself.
        await ok(c, "respond_to_task", task_id=tid, answer="Grace")
        done = await ok(c, "stream_task", task_id=tid, after=waiting["last_seq"], timeout=30)
    assert done["result"]["output"] == "hello Grace\n"


def test_choices_become_an_enum_in_the_form() -> None:
    schema = render_elicitation_schema(
        answer_model(Question(question="Deploy?", choices=["approve", "deny"]))
    )
    assert schema["properties"]["answer"]["enum"] == ["approve", "deny"]
    free = render_elicitation_schema(answer_model(Question(question="Who?")))
    assert free["properties"]["answer"]["type"] == "string" and "enum" not in free["properties"]["answer"]
