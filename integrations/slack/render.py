"""Block Kit for the messages the integration posts. Pure functions: (text, blocks).

`text` is the notification/fallback text Slack shows where blocks are not rendered.
Button values carry what the press must act on (task id, question seq), as JSON.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from store.models import Task, utcnow

ANSWER = "meta_agent_answer"  # action ids: ANSWER_<n> (unique within the block)
RETRY = "meta_agent_retry"
APPROVE = "meta_agent_plan_approve"
REJECT = "meta_agent_plan_reject"

ICONS = {
    "pending": ":hourglass_flowing_sand:",
    "running": ":gear:",
    "requires_input": ":raising_hand:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
}
MAX_TEXT = 2900  # a section's text is limited to 3000 characters


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elapsed(task: Task, now: datetime | None = None) -> str:
    start = task.started_at or task.created_at
    end = task.finished_at or now or utcnow()
    s = max(0, int((end - start).total_seconds()))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _who(task: Task) -> str:
    return f"*{task.team or task.agent}* on `{task.queue}`"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 2000)}]}


def progress(task: Task, tool: str | None, board_url: str) -> tuple[str, list[dict[str, Any]]]:
    """The one message that follows a task: status, current tool call, elapsed time."""
    status = task.status.replace("_", " ")
    line = f"{ICONS.get(task.status, '')} {_who(task)}: *{status}*"
    if task.status == "running" and tool:
        line += f" · running `{tool}`"
    if task.cancel_requested and task.status == "running":
        line += " · cancel requested"
    ctx = f"Task `{task.id}` · {elapsed(task)} · <{board_url}|open on the board>"
    if task.attempt > 1:
        ctx += f" · attempt {task.attempt}"
    return f"{status}: {task.agent or task.team} ({task.id})", [_section(line), _context(ctx)]


def scheduled(schedule: str, task: Task, board_url: str) -> tuple[str, list[dict[str, Any]]]:
    """The root message of a scheduled run; its progress and result follow in its thread."""
    prompt = task.prompt.splitlines()[0] if task.prompt else ""
    blocks = [
        _section(f":alarm_clock: Scheduled run of *{schedule}* started: <{board_url}|task `{task.id}`>"),
        _context(f"{_who(task)} · {clip(prompt, 200)}"),
    ]
    return f"Scheduled run of {schedule} started: {board_url}", blocks


def question(
    task_id: str, seq: int, text: str, choices: list[str], board_url: str
) -> tuple[str, list[dict[str, Any]]]:
    """A Requires Input question: buttons for its choices (approve/deny styled), and a hint
    that a reply in the thread answers it too."""
    blocks = [_section(f":raising_hand: *The task needs an answer*\n{text}")]
    if choices:
        buttons: list[dict[str, Any]] = []
        for i, choice in enumerate(choices[:25]):
            button: dict[str, Any] = {
                "type": "button",
                "action_id": f"{ANSWER}_{i}",
                "text": {"type": "plain_text", "text": clip(choice, 75)},
                "value": json.dumps({"t": task_id, "s": seq, "a": choice})[:2000],
            }
            if choice.lower() in ("approve", "yes"):
                button["style"] = "primary"
            elif choice.lower() in ("deny", "reject", "no"):
                button["style"] = "danger"
            buttons.append(button)
        # At most 25 elements per actions block; 5 per row is how Slack lays them out anyway.
        blocks.append({"type": "actions", "block_id": f"answer:{seq}", "elements": buttons})
    hint = "Reply in this thread to answer" + (" (or press a button)" if choices else "")
    blocks.append(_context(f"{hint} · <{board_url}|task `{task_id}`>"))
    return f"The task needs an answer: {clip(text, 300)}", blocks


def answered(text: str, answer: str, by: str | None) -> tuple[str, list[dict[str, Any]]]:
    who = _person(by)
    blocks = [
        _section(f":raising_hand: {text}"),
        _context(f":white_check_mark: {who} answered *{clip(answer, 500)}*"),
    ]
    return f"{who} answered: {clip(answer, 300)}", blocks


def _person(by: str | None) -> str:
    if by and by.startswith("slack:"):
        return f"<@{by[6:]}>"
    return f"{by} (on the board)" if by else "someone"


def _output(result: Any) -> object:
    """What a completed task produced: its result's `output` field, or the result itself."""
    if isinstance(result, dict):
        fields = cast(dict[str, object], result)  # JSON from the database: string keys
        return fields.get("output")
    return result


def result(task: Task, board_url: str, files: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """The closing message: the result summary or the error, the board link, Retry on failure."""
    icon = ICONS.get(task.status, "")
    head = f"{icon} {_who(task)} *{task.status}* after {elapsed(task)}"
    body = ""
    if task.status == "completed":
        out = _output(task.result)
        body = f"```{clip(str(out).strip(), 2800)}```" if out not in (None, "") else ""
    elif task.error_code or task.error_message:
        body = f"*{task.error_code or 'error'}*: {clip(task.error_message or '', 2500)}"
    blocks = [_section(head + ("\n" + body if body else ""))]
    ctx = f"<{board_url}|Open task `{task.id}` on the board>"
    if files:
        ctx += f" · {files} artifact{'s' if files > 1 else ''} below"
    blocks.append(_context(ctx))
    if task.status in ("failed", "cancelled"):
        blocks.append(
            {
                "type": "actions",
                "block_id": "retry",
                "elements": [
                    {
                        "type": "button",
                        "action_id": RETRY,
                        "text": {"type": "plain_text", "text": "Retry"},
                        "value": task.id,
                    }
                ],
            }
        )
    return f"{task.status}: {task.agent or task.team} ({task.id}) {board_url}", blocks


def approval(approval_id: str, tool: str, arguments: Any, plan: str) -> tuple[str, list[dict[str, Any]]]:
    """The meta agent's plan waiting for the person's go-ahead."""
    args = clip(json.dumps(arguments, indent=1, default=str), 1500)
    blocks = [
        _section(f":clipboard: *Approve this plan?*\n{clip(plan or '', 1200)}"),
        _context(f"`{tool}` {args}"),
        {
            "type": "actions",
            "block_id": "plan",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": approval_id,
                },
                {
                    "type": "button",
                    "action_id": REJECT,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": approval_id,
                },
            ],
        },
    ]
    return f"Approve this plan? {clip(plan or tool, 300)}", blocks


def decided(plan: str, approve: bool, user: str) -> tuple[str, list[dict[str, Any]]]:
    verdict = "approved" if approve else "rejected"
    return f"<@{user}> {verdict} the plan", [
        _section(f":clipboard: {clip(plan or '', 1500)}"),
        _context(f"{':white_check_mark:' if approve else ':no_entry_sign:'} <@{user}> {verdict} the plan"),
    ]


def task_list(tasks: list[Task], board: str) -> str:
    if not tasks:
        return "No running or waiting tasks."
    lines = [
        f"{ICONS.get(t.status, '')} <{board}/#/tasks/{t.id}|`{t.id}`> {t.team or t.agent}: "
        f"{t.status.replace('_', ' ')} · {elapsed(t)} · {clip(t.prompt.splitlines()[0] if t.prompt else '', 80)}"
        for t in tasks
    ]
    return "\n".join(lines)
