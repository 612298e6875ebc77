"""`execution get`: one execution in full: the plan, the steps, the environment, the result.

The steps come from the event log (the one source of what a task did): every tool call in
the order it started, with its status and duration; a `delegate` call is a sub-task, named
by the child task's id; a question to a person is a step too. The environment is the queue
(and its environment label), the worker that ran it (its host while the worker is known),
and the agent's runtime and model.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cli.common import as_dict, escape
from cli.output import console, plain, print_task

if TYPE_CHECKING:
    from sdk.client import ControlPlaneClient
    from sdk.schemas import EventOut, TaskOut

__all__ = ["execution_detail", "print_detail", "result_text", "steps_of"]

MAX_EVENTS = 5000  # read at most this much of a long log; the steps say when they stop short
_CHILD = re.compile(r"delegated as task (\S+)")


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def steps_of(events: list[EventOut]) -> list[dict[str, Any]]:
    """Tool calls, sub-tasks and questions, in the order they started."""
    steps: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for e in events:
        d = e.data
        if e.kind == "tool_started":
            name = str(d.get("name") or "tool")
            step: dict[str, Any] = {"kind": "tool", "name": name, "status": "running"}
            step |= {"arguments": d.get("arguments"), "started_at": e.created_at, "duration_seconds": None}
            if name == "delegate":
                agent = as_dict(d.get("arguments")).get("agent")
                step |= {"kind": "subtask", "agent": agent, "task_id": None}
            calls[str(d.get("tool_call_id"))] = step
            steps.append(step)
        elif e.kind == "tool_output" and (call := calls.get(str(d.get("tool_call_id")))):
            found = _CHILD.search(str(d.get("chunk") or ""))
            if call["kind"] == "subtask" and found and not call["task_id"]:
                call["task_id"] = found.group(1)
        elif e.kind == "tool_completed" and (done := calls.get(str(d.get("tool_call_id")))):
            done["status"] = str(d.get("status") or ("failed" if d.get("error") else "success"))
            ms = d.get("duration_ms")
            took = (
                ms / 1000
                if isinstance(ms, int | float) and ms
                else _seconds(done["started_at"], e.created_at)
            )
            done["duration_seconds"] = round(took, 3)
            if d.get("error"):
                done["error"] = str(d["error"])[:500]
        elif e.kind == "input_requested":
            question = str(d.get("question") or "")
            steps.append(
                {"kind": "question", "name": question[:200], "status": "asked", "started_at": e.created_at}
            )
        elif e.kind == "input_received" and steps and steps[-1]["kind"] == "question":
            steps[-1]["status"] = "answered"
            steps[-1]["duration_seconds"] = _seconds(steps[-1]["started_at"], e.created_at)
    return steps


def _worker_of(events: list[EventOut]) -> str | None:
    """The worker of the last claim (the task row forgets it once the task ends)."""
    for e in reversed(events):
        if e.kind == "status" and e.data.get("status") == "running" and e.data.get("worker_id"):
            return str(e.data["worker_id"])
    return None


def _events(c: ControlPlaneClient, task_id: str) -> tuple[list[EventOut], bool]:
    events: list[EventOut] = []
    after = 0
    while len(events) < MAX_EVENTS:
        page = c.executions.events(task_id, after=after, limit=1000)
        events += page.items
        if not page.items or page.items[-1].seq >= page.last_seq:
            return events, False
        after = page.items[-1].seq
    return events, True


def _environment(c: ControlPlaneClient, task: TaskOut, worker_id: str | None) -> dict[str, Any]:
    from sdk.client import ApiError

    env: dict[str, Any] = {"queue": task.queue, "environment": None, "worker_id": worker_id}
    env |= {"worker_host": None, "runtime": None, "model": None}
    try:  # each piece is extra: one that is gone (a deleted agent, a dead worker) is left out
        env["environment"] = c.queues.get(task.queue).environment
    except ApiError:
        pass
    if task.agent:
        try:
            agent = c.agents.get(task.agent)
            env["runtime"], env["model"] = agent.runtime, agent.model
        except ApiError:
            pass
    if worker_id:
        try:
            live = {w.id: w for w in c.workers.list()}
            env["worker_host"] = live[worker_id].hostname if worker_id in live else None
        except ApiError:
            pass
    return env


def execution_detail(c: ControlPlaneClient, task: TaskOut) -> dict[str, Any]:
    """The plan, steps, environment and result of `task`, as JSON-ready data."""
    from cli.common import wire

    events, cut = _events(c, task.id)
    steps = steps_of(events)
    return {
        "plan": task.plan,
        "steps": wire_steps(steps),
        "steps_truncated": cut,
        "environment": _environment(c, task, _worker_of(events) or task.worker_id),
        "result_text": result_text(wire(task).get("result")),
    }


def wire_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in s.items()} for s in steps]


def result_text(result: Any) -> str | None:
    """A result's output as text (a command's stdout, an llm agent's answer), else None."""
    if isinstance(result, str):
        return result
    output = as_dict(result).get("output")
    return output if isinstance(output, str) else None


def print_detail(task: TaskOut, detail: dict[str, Any], *, link: str) -> None:
    """`print_task`'s overview, then the plan, the environment, the steps and the result."""
    print_task(task, link=link, result=detail["result_text"] is None)
    out = console()
    plan = as_dict(detail["plan"])
    if plan.get("text"):
        out.print("\n[bold]Plan[/] [dim](the meta agent's)[/]")
        out.print(escape(str(plan["text"])), highlight=False)
    env = detail["environment"]
    out.print("\n[bold]Environment[/]")
    where = env["queue"] + (f" ({env['environment']})" if env["environment"] else "")
    worker = env["worker_id"] and (
        env["worker_id"] + (f" on {env['worker_host']}" if env["worker_host"] else "")
    )
    runs = env["runtime"] and (env["runtime"] + (f" · {env['model']}" if env["model"] else ""))
    for label, value in (("queue", where), ("worker", worker), ("runtime", runs)):
        out.print(f"  {label:<8} {escape(value or '-')}", highlight=False)
    out.print(f"\n[bold]Steps[/] ({len(detail['steps'])})")
    if not detail["steps"]:
        out.print("  [dim]no tool calls or sub-tasks[/]")
    for i, step in enumerate(detail["steps"], 1):
        took = step.get("duration_seconds")
        what = step["name"] if step["kind"] != "subtask" else f"sub-task → {step.get('agent') or '?'}"
        if step.get("task_id"):
            what += f" ({step['task_id']})"
        extra = f"  [red]{escape(step['error'])}[/]" if step.get("error") else ""
        timing = f"{took:.1f}s" if isinstance(took, int | float) else "…"
        line = f"  {i:>2}. {escape(what)}  [dim]{escape(step['status'])} · {timing}[/]{extra}"
        out.print(line, highlight=False)
    if detail["steps_truncated"]:
        out.print(f"  [dim]… the first {MAX_EVENTS} events only: meta-agent execution logs {task.id}[/]")
    if detail["result_text"] is not None:
        out.print("\n[bold]Result[/]")
        # As text: a command's stdout keeps its lines (not JSON with \n escapes).
        out.print(escape(detail["result_text"].rstrip("\n")) or "[dim](empty)[/]", highlight=False)
        rest = {k: v for k, v in as_dict(task.result).items() if k != "output"}
        if rest:
            out.print(f"[dim]{escape(plain(rest))}[/]", highlight=False)
