"""`stream_task`: follow a task live, as MCP progress notifications, within a time bound.

One call follows the task's event log (SSE through the SDK) from `after`, reporting every
event with `ctx.report_progress(seq, message=...)`, and returns when the task ends, when it
needs an answer, or at `timeout` with the seq to go on from.

When the task needs an answer and the client can elicit, the user is asked directly and the
answer is sent, so the task resumes within the same tool call:
- on 2026-07-28 the server may not send requests mid-call, so the tool returns an
  `InputRequiredResult`; the client asks its user and retries the call with the answer
  (`ctx.input_responses`) and our `request_state` (sealed by the SDK), and we go on;
- on 2025-11-25 and older, `ctx.elicit()` asks over the session's back-channel.
Otherwise the question and its choices come back for the assistant to ask its user.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Annotated, Any, Literal

from mcp.server.elicitation import AcceptedElicitation, render_elicitation_schema
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    ToolAnnotations,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, ValidationError, create_model

from kernel.statuses import TaskStatus
from sdk.client import ApiError
from sdk.schemas import EventOut, StreamEnd, TaskOut
from tools.apps import CARD_URI, ui_meta
from tools.backend import Backend, Client
from tools.models import FINISHED, ErrorInfo, EventLine, Question, StreamResult, describe_event
from tools.tasks import TaskId

__all__ = ["MAX_TIMEOUT", "register"]

MAX_TIMEOUT = 300.0
INPUT_KEY = "answer"
FOLLOWS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)


def answer_model(q: Question) -> type[BaseModel]:
    """The elicitation form for a question: one `answer` field, an enum when there are choices."""
    kind: Any = Literal[tuple(q.choices)] if q.choices else str
    hint = "Pick one." if q.choices else "Your answer."
    field = Field(title="Answer", description=hint, min_length=1) if not q.choices else Field(title="Answer")
    return create_model("TaskAnswer", answer=(kind, field))


class _RoundState(BaseModel):
    """What a 2026-07-28 round carries to the next (`request_state`, sealed by the MCP SDK)."""

    task: str
    after: int = 0
    q: str | None = None
    answers: list[str] = []
    lines: list[EventLine] = []


class _Follow:
    """The state of one stream_task call (and, on 2026-07-28, of its retry rounds)."""

    def __init__(self, backend: Backend, ctx: Context[Any, Any], task_id: str, after: int, timeout: float):
        self.backend, self.ctx, self.task_id = backend, ctx, task_id
        self.last_seq = after
        self.timeout = timeout
        self.lines: deque[EventLine] = deque(maxlen=50)
        self.answers: list[str] = []
        self.note: str | None = None
        self.declined = False
        self._c: Client | None = None

    @property
    def c(self) -> Client:
        assert self._c is not None, "only inside run()"
        return self._c

    @property
    def modern(self) -> bool:
        version = self.ctx.protocol_version
        return version is not None and is_version_at_least(version, "2026-07-28")

    async def run(self) -> StreamResult | InputRequiredResult:
        async with self.backend.client(f"follow task {self.task_id!r}") as c:
            self._c = c
            task = await c.executions.get(self.task_id)
            if self.ctx.request_state:
                task = await self._take_answer(task)
            deadline = time.monotonic() + self.timeout
            while True:
                if task.status in FINISHED:
                    await self._catch_up()
                    return self._result("finished", task)
                if task.status == TaskStatus.requires_input:
                    await self._catch_up()
                    answer = await self._ask(task)
                    if isinstance(answer, InputRequiredResult):
                        return answer
                    if answer is None:
                        return self._result("needs_input", task)
                    task = await self._respond(task, answer)
                    deadline = time.monotonic() + self.timeout  # a person's time does not count
                    continue
                task, timed_out = await self._follow(deadline)
                if timed_out:
                    return self._result("timeout", task)

    # --- following -----------------------------------------------------------------------

    async def _report(self, event: EventOut) -> None:
        seq, kind = event.seq, event.kind
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        text = describe_event(kind, event.data)
        if kind != "message_delta":
            self.lines.append(EventLine(seq=seq, kind=kind, text=text))
        await self.ctx.report_progress(seq, None, text)

    async def _catch_up(self) -> None:
        """Report the events written since `last_seq` (the task is not moving, or is done)."""
        while True:
            page = await self.c.executions.events(self.task_id, after=self.last_seq, limit=1000)
            for event in page.items:
                await self._report(event)
            if not page.items or self.last_seq >= page.last_seq:
                return

    async def _follow(self, deadline: float) -> tuple[TaskOut, bool]:
        """Stream until the task ends or waits for input: (task, False); or the deadline: (task, True)."""
        stream = self.c.executions.stream(self.task_id, self.last_seq)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async for item in stream:
                    if isinstance(item, StreamEnd):
                        if item.task:
                            return item.task, False
                        break
                    await self._report(item)
                    if item.kind == "status" and item.data.get("status") == "requires_input":
                        # The log may be replaying an old question: only the current state counts.
                        task = await self.c.executions.get(self.task_id)
                        if task.status == TaskStatus.requires_input:
                            return task, False
        except TimeoutError:
            return await self.c.executions.get(self.task_id), True
        finally:
            await stream.aclose()
        return await self.c.executions.get(self.task_id), False

    # --- answers -------------------------------------------------------------------------

    def _can_elicit(self) -> bool:
        caps = self.ctx.client_capabilities
        form = caps.elicitation if caps is not None else None
        if form is None or (form.form is None and form.url is not None):
            return False
        return self.modern or bool(getattr(self.ctx.session, "can_send_request", True))

    async def _ask(self, task: TaskOut) -> str | InputRequiredResult | None:
        """Ask the user through the client; None when it cannot (or they would not) answer."""
        pending = task.pending_input
        if not pending or self.declined or not self._can_elicit():
            return None
        q = Question.of(pending)
        model = answer_model(q)
        if self.modern:
            state = {
                "task": self.task_id,
                "after": self.last_seq,
                "q": q.question,
                "answers": self.answers,
                "lines": [line.model_dump() for line in self.lines],
            }
            params = ElicitRequestFormParams(
                message=q.question, requested_schema=render_elicitation_schema(model)
            )
            return InputRequiredResult(
                input_requests={INPUT_KEY: ElicitRequest(params=params)}, request_state=json.dumps(state)
            )
        try:
            outcome = await self.ctx.elicit(q.question, model)
        except (MCPError, ValueError) as exc:
            self.note = f"Asking the user through the client failed ({exc}); ask them yourself."
            return None
        if isinstance(outcome, AcceptedElicitation):
            return str(outcome.data.model_dump()["answer"])  # the form `answer_model` made
        self._declined(outcome.action)
        return None

    def _declined(self, action: str) -> None:
        self.declined = True
        self.note = (
            f"The user did not answer the client's form ({action}); ask them in the conversation, "
            "or cancel the task if they no longer want it."
        )

    async def _take_answer(self, task: TaskOut) -> TaskOut:
        """A retry round (2026-07-28): send the answer the client collected, if still wanted."""
        try:
            state = _RoundState.model_validate_json(self.ctx.request_state or "")
        except ValidationError:
            return task
        if state.task != self.task_id:
            return task
        self.last_seq = max(self.last_seq, state.after)
        self.answers = state.answers
        self.lines.extend(state.lines)
        response = (self.ctx.input_responses or {}).get(INPUT_KEY)
        if not isinstance(response, ElicitResult):
            return task
        if response.action != "accept" or not response.content:
            self._declined(response.action)
            return task
        question = task.pending_input.question if task.pending_input else None
        if task.status != TaskStatus.requires_input or question != state.q:
            self.note = "The question was answered elsewhere before the user's answer arrived."
            return task
        return await self._respond(task, str(response.content.get(INPUT_KEY, "")))

    async def _respond(self, task: TaskOut, answer: str) -> TaskOut:
        try:
            task = await self.c.executions.respond(self.task_id, answer)
        except ApiError as exc:
            if exc.code != "not_waiting_for_input":
                raise
            self.note = "The question was answered elsewhere before the user's answer arrived."
            return await self.c.executions.get(self.task_id)
        self.answers.append(answer)
        return task

    # --- the result ----------------------------------------------------------------------

    def _result(self, outcome: Literal["finished", "needs_input", "timeout"], task: TaskOut) -> StreamResult:
        status = task.status
        pending = task.pending_input if status == TaskStatus.requires_input else None
        question = Question.of(pending) if pending else None
        error = ErrorInfo.of(task.error)
        tid, after = self.task_id, self.last_seq
        if outcome == "needs_input" and question is not None:
            choices = f" (choices: {', '.join(question.choices)})" if question.choices else ""
            step = (
                f"The task waits for an answer. Ask the user: {question.question!r}{choices}; then call "
                f"respond_to_task(task_id={tid!r}, answer=...) and stream_task(task_id={tid!r}, after={after})."
            )
        elif outcome == "timeout":
            step = f"The task is still {status}: call stream_task(task_id={tid!r}, after={after}) to keep following it."
        elif status == "completed":
            step = "The task completed; its output is in `result` and `events`."
        elif status == "failed":
            detail = f" ({error.code}: {error.message})" if error else ""
            step = (
                f"The task failed{detail}. Tell the user; retry_task runs it again once the cause is fixed."
            )
        else:
            step = "The task was cancelled."
        if self.note:
            step = f"{self.note} {step}"
        return StreamResult(
            task_id=tid,
            outcome=outcome,
            status=status,
            last_seq=after,
            question=question,
            result=task.result if status == TaskStatus.completed else None,
            error=error,
            answers=self.answers,
            events=list(self.lines),
            next_step=step,
            board_url=self.backend.board_link(tid),
        )


def register(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="Follow a task", annotations=FOLLOWS, meta=ui_meta(CARD_URI))  # MCP Apps card
    async def stream_task(
        ctx: Context,
        task_id: TaskId,
        after: Annotated[
            int, Field(ge=0, description="last_seq of the previous call (0 = from the start).")
        ] = 0,
        timeout: Annotated[
            float,
            Field(
                gt=0,
                le=MAX_TIMEOUT,
                description=f"Seconds to wait (at most {MAX_TIMEOUT:g}).",
            ),
        ] = 60,
    ) -> StreamResult | InputRequiredResult:
        """Follow a task (events come as progress) until its `outcome`: finished (see result
        or error); needs_input (ask the user `question`, send the reply with respond_to_task,
        call again); timeout (call again with after=last_seq)."""
        if not task_id.strip():
            raise ToolError("task_id is empty; pass the id create_task or list_tasks returned.")
        return await _Follow(backend, ctx, task_id, after, timeout).run()
