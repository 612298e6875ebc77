"""`meta-agent exec "prompt"` and `meta-agent chat`: the meta agent, run in this process.

The agent (`meta_agent.agent`) calls the control plane at --url with --api-key through the
MCP tools, its tasks marked `source=cli` and requested by the local user. Its reply streams
to the terminal; before it creates a task, the plan is shown and the person approves it
(unless -y). When the task asks a question, the person is asked (at a terminal). Once the
agent has answered, a task it started that is still going is followed live (as `exec agent
... -f` does), and the exit code is the task's: 0 completed, 1 failed, 130 cancelled.
`chat` is the same agent in a loop, one turn per line, the conversation kept in memory.
Imported only by those commands: it pulls in mcp and, on the first model call, litellm.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from typing import Any

import typer

from meta_agent.cli import follow as follow_module
from meta_agent.cli.common import client, escape, state
from meta_agent.cli.output import console, err_console, status_text

__all__ = ["run_chat", "run_exec"]

EXIT_NO_MODEL = 2
TERMINAL = ("completed", "failed", "cancelled")


def run_exec(
    ctx: typer.Context,
    prompt: str,
    *,
    yes: bool,
    model: str | None,
    api_base: str | None,
    api_key: str | None,
) -> int:
    """Run one turn of the meta agent on `prompt`; the exit code."""
    if not model:
        return _no_model()
    from meta_agent.agent import ModelCallFailed
    from meta_agent.llm import close_clients

    screen = _Screen()
    agent = _agent(ctx, screen, model, api_base, api_key, yes=yes)

    async def one_turn() -> None:
        try:
            await agent.turn([], prompt, screen.show)
        finally:
            await close_clients()

    try:
        asyncio.run(one_turn())
    except ModelCallFailed as exc:
        return screen.failed(exc)
    screen.end_line()
    if not agent.task_ids:
        return 0
    task_id = agent.task_ids[-1]
    task = client(ctx).executions.get(task_id)
    if task.get("status") not in TERMINAL:
        console().print(f"[dim]following execution {escape(task_id)} until it ends[/]")
        from meta_agent.cli.executions import _follow_and_exit

        _follow_and_exit(ctx, task_id, json_out=False, may_ask=True)
    return follow_module.exit_code(task.get("status"))


def run_chat(
    ctx: typer.Context, *, yes: bool, model: str | None, api_base: str | None, api_key: str | None
) -> int:
    """An interactive session: one turn per line the person types, until `exit` or end of input."""
    if not model:
        return _no_model()
    from meta_agent.agent import ModelCallFailed
    from meta_agent.llm import close_clients

    screen = _Screen()
    agent = _agent(ctx, screen, model, api_base, api_key, yes=yes)
    console().print("[dim]chat with the meta agent; `exit` or Ctrl-D ends it[/]")

    async def session() -> None:
        history: list[dict[str, Any]] = []
        try:
            while True:
                line = await asyncio.to_thread(_read_line)
                if line is None:
                    return
                if not line:
                    continue
                try:
                    history += await agent.turn(history, line, screen.show)
                except ModelCallFailed as exc:
                    screen.failed(exc)
                screen.end_line()
        finally:
            await close_clients()

    asyncio.run(session())
    return 0


def _read_line() -> str | None:
    """The person's next message; None at `exit` or the end of input."""
    try:
        line = str(typer.prompt("you", prompt_suffix="> ")).strip()
    except typer.Abort:
        typer.echo()
        return None
    return None if line in ("exit", "quit") else line


def _no_model() -> int:
    from meta_agent.agent import MODEL_SETTING_HELP

    err_console().print(f"[red]error: {escape(MODEL_SETTING_HELP)}[/]", soft_wrap=True)
    err_console().print(
        '[dim]or run an agent directly: meta-agent exec agent NAME "prompt" '
        "(meta-agent agents list shows them)[/]",
        soft_wrap=True,
    )
    return EXIT_NO_MODEL


def _agent(
    ctx: typer.Context, screen: _Screen, model: str, api_base: str | None, api_key: str | None, *, yes: bool
) -> Any:
    from meta_agent.agent import MetaAgent, chat_backend
    from meta_agent.llm import ProviderConfig

    st = state(ctx)
    backend = chat_backend(st.url, st.api_key, source="cli", requested_by=_user(), public_url=st.public_url)
    return MetaAgent(
        ProviderConfig(model, api_base=api_base, api_key=api_key),
        backend,
        approve=None if yes else screen.approve,
        elicit=screen.elicit if follow_module.stdin_is_tty() else None,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


class _Screen:
    """Shows what the agent does; asks the person for approvals and answers."""

    def __init__(self) -> None:
        self.out = console()
        self.mid_line = False

    def end_line(self) -> None:
        if self.mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.mid_line = False

    def failed(self, exc: Any) -> int:
        self.end_line()
        err_console().print(f"[red]error: {escape(exc.message)} ({escape(exc.code)})[/]", soft_wrap=True)
        return 1

    def show(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "text":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
            self.mid_line = not event["text"].endswith("\n")
            return
        self.end_line()
        if kind == "tool_call":
            args = json.dumps(event["arguments"], ensure_ascii=False)
            self.out.print(f"[dim]→ {escape(event['name'])} {escape(_cut(args))}[/]", soft_wrap=True)
        elif kind == "tool_result" and event["is_error"]:
            self.out.print(f"[yellow]  {escape(_cut(event['text']))}[/]", soft_wrap=True)
        elif kind == "progress":
            self.out.print(f"[dim]  {escape(_cut(event['message']))}[/]", soft_wrap=True)
        elif kind == "task":
            self.out.print(
                f"execution [bold]{escape(str(event['task_id']))}[/] {status_text(event.get('status'))}; "
                f"board: {escape(str(event.get('board_url')))}",
                highlight=False,
                soft_wrap=True,
            )
        elif kind == "log":
            err_console().print(f"[dim]{escape(event['message'])}[/]", soft_wrap=True)

    async def approve(self, name: str, args: dict[str, Any], plan: str) -> bool:
        self.end_line()
        what = (
            f"retry execution {args.get('task_id')}"
            if name == "retry_task"
            else f"run {args.get('agent') or args.get('team')} on queue {args.get('queue') or '(default)'}"
        )
        self.out.print(f"[bold]about to {escape(what)}[/]", soft_wrap=True)
        if args.get("prompt"):
            self.out.print(f"  prompt: {escape(_cut(str(args['prompt'])))}", soft_wrap=True, highlight=False)
        if not follow_module.stdin_is_tty():
            err_console().print("[yellow]not approved: no terminal to ask; pass -y to approve plans[/]")
            return False
        return await asyncio.to_thread(_confirm)

    async def elicit(self, context: Any, params: Any) -> Any:
        from mcp import types

        self.end_line()
        schema = getattr(params, "requested_schema", None) or {}
        field = (schema.get("properties") or {}).get("answer") or {}
        pending = {"question": params.message, "choices": field.get("enum") or []}
        answer = await asyncio.to_thread(follow_module.ask, pending)
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"answer": answer})


def _confirm() -> bool:
    try:
        return bool(typer.confirm("Go ahead?", default=False))
    except typer.Abort:
        return False


def _cut(text: str, width: int = 200) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
