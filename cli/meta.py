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
from pathlib import Path
from typing import Any

import typer

from cli import follow as follow_module
from cli.common import as_dict, as_list, client, escape, state, wire
from cli.output import console, err_console, print_json_line, status_text
from kernel.statuses import TERMINAL

__all__ = ["run_chat", "run_exec"]

EXIT_NO_MODEL = 2


def run_exec(
    ctx: typer.Context,
    prompt: str,
    *,
    yes: bool,
    model: str | None,
    api_base: str | None,
    api_key: str | None,
    mcp_url: str | None = None,
    cwd: Path | None = None,
    json_out: bool = False,
) -> int:
    """Run one turn of the meta agent on `prompt`, follow its task; the exit code.

    `mcp_url`: reach the tools over that MCP endpoint instead of in-process. `cwd`: run the
    work on a throw-away local worker in that directory (`--local`). `json_out`: one JSON
    object per line on stdout, per agent event, per followed task event, then the result.
    """
    if not model:
        return _no_model(json_out)
    screen: _Screen = _JsonScreen() if json_out else _Screen()
    if cwd is None:
        return _exec(ctx, prompt, screen, model, api_base, api_key, yes=yes, mcp_url=mcp_url)
    from cli.local import LocalWorker

    with LocalWorker(ctx, cwd, user=user_name(), llm_api_base=api_base, llm_api_key=api_key) as queue:
        screen.local(queue, cwd)
        return _exec(
            ctx, prompt, screen, model, api_base, api_key, yes=yes, mcp_url=mcp_url, local=(queue, cwd)
        )


def _exec(
    ctx: typer.Context,
    prompt: str,
    screen: _Screen,
    model: str,
    api_base: str | None,
    api_key: str | None,
    *,
    yes: bool,
    mcp_url: str | None,
    local: tuple[str, Path] | None = None,
) -> int:
    from kernel.llm import close_clients
    from meta_agent.agent import ModelCallFailed

    agent = _agent(ctx, screen, model, api_base, api_key, yes=yes, mcp_url=mcp_url, local=local)
    reply: list[str] = []

    def show(event: dict[str, Any]) -> None:
        if event["type"] == "text":
            reply.append(event["text"])
        elif event["type"] == "text_reset":
            reply.clear()
        screen.show(event)

    async def one_turn() -> None:
        try:
            await agent.turn([], prompt, show)
        finally:
            await close_clients()

    from meta_agent.remote import McpUnavailable

    try:
        asyncio.run(one_turn())
    except (ModelCallFailed, McpUnavailable) as exc:
        code = screen.failed(exc)
        screen.result("".join(reply), agent.task_ids, None, code)
        return code
    except KeyboardInterrupt:
        screen.end_line()
        err_console().print("[dim]interrupted[/]")
        screen.result("".join(reply), agent.task_ids, None, 130)
        return 130
    screen.end_line()
    if not agent.task_ids:
        screen.result("".join(reply), agent.task_ids, None, 0)
        return 0
    task_id = agent.task_ids[-1]
    task = wire(client(ctx).executions.get(task_id))
    if isinstance(screen, _JsonScreen):
        # Always: a task that already ended still has its events to print (the stream replays
        # them and ends at once); skipping them when the worker was quick made the output racy.
        task = screen.follow(ctx, task_id)
    elif task.get("status") not in TERMINAL:
        console().print(f"[dim]following execution {escape(task_id)} until it ends[/]")
        from cli.follow import follow_and_exit

        follow_and_exit(ctx, task_id, json_out=False, may_ask=True)
    code = follow_module.exit_code(task.get("status"))
    screen.result("".join(reply), agent.task_ids, task, code)
    return code


def run_chat(
    ctx: typer.Context,
    *,
    yes: bool,
    model: str | None,
    api_base: str | None,
    api_key: str | None,
    mcp_url: str | None = None,
) -> int:
    """An interactive session: one turn per line the person types, until `exit` or end of input."""
    if not model:
        return _no_model()
    from kernel.llm import close_clients
    from meta_agent.agent import ModelCallFailed
    from meta_agent.remote import McpUnavailable

    screen = _Screen()
    agent = _agent(ctx, screen, model, api_base, api_key, yes=yes, mcp_url=mcp_url)
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
                except (ModelCallFailed, McpUnavailable) as exc:
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


def _no_model(json_out: bool = False) -> int:
    from meta_agent.agent import MODEL_SETTING_HELP

    if json_out:
        print_json_line({"type": "error", "code": "model_not_configured", "message": MODEL_SETTING_HELP})
    err_console().print(f"[red]error: {escape(MODEL_SETTING_HELP)}[/]", soft_wrap=True)
    err_console().print(
        '[dim]or run an agent directly: meta-agent exec agent NAME "prompt" '
        "(meta-agent agents list shows them)[/]",
        soft_wrap=True,
    )
    return EXIT_NO_MODEL


def _agent(
    ctx: typer.Context,
    screen: _Screen,
    model: str,
    api_base: str | None,
    api_key: str | None,
    *,
    yes: bool,
    mcp_url: str | None = None,
    local: tuple[str, Path] | None = None,
) -> Any:
    from kernel.llm_settings import meta_agent_config
    from kernel.settings import Settings
    from meta_agent.agent import SYSTEM_PROMPT, MetaAgent, chat_backend
    from meta_agent.remote import McpFactory, http_tools, in_process_tools, pin_queue

    st = state(ctx)
    user = user_name()
    backend = chat_backend(st.url, st.api_key, source="cli", requested_by=user, public_url=st.public_url)
    elicit = screen.elicit if follow_module.stdin_is_tty() else None
    tools: McpFactory | None = None
    if mcp_url:
        tools = http_tools(mcp_url, st.api_key, source="cli", requested_by=user, elicit=elicit)
    system_prompt = SYSTEM_PROMPT
    if local is not None:
        from cli.local import local_note

        queue, cwd = local
        tools = pin_queue(tools or in_process_tools(backend, elicit=elicit), queue)
        system_prompt += local_note(queue, cwd)
    return MetaAgent(
        meta_agent_config(Settings(), model, api_base, api_key),
        backend,
        approve=None if yes else screen.approve,
        elicit=elicit,
        system_prompt=system_prompt,
        mcp_client=tools,
    )


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


class _Screen:
    """Shows what the agent does; asks the person for approvals and answers."""

    def __init__(self) -> None:
        self.out = console()
        self.mid_line = False

    def local(self, queue: str, cwd: Path) -> None:
        err_console().print(f"[dim]local worker on queue {escape(queue)} in {escape(str(cwd))}[/]")

    def result(self, reply: str, task_ids: list[str], task: dict[str, Any] | None, code: int) -> None:
        """The end of `exec` (the terminal already showed it all)."""

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
        if kind == "text_reset":
            err_console().print("[dim](the model call is retried: the text above is discarded)[/]")
            return
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
        schema = as_dict(getattr(params, "requested_schema", None))
        field = as_dict(as_dict(schema.get("properties")).get("answer"))
        pending = {"question": params.message, "choices": as_list(field.get("enum"))}
        answer = await asyncio.to_thread(follow_module.ask, pending)
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"answer": answer})


class _JsonScreen(_Screen):
    """`exec --json`: every agent event as one JSON line on stdout, then the followed task's
    events (`{"type": "event", "event": ...}`), then `{"type": "result", ...}`. Prompts and
    warnings go to stderr, so stdout stays JSON lines."""

    def __init__(self) -> None:
        super().__init__()
        self.out = err_console()

    def end_line(self) -> None:
        return

    def local(self, queue: str, cwd: Path) -> None:
        print_json_line({"type": "local", "queue": queue, "cwd": str(cwd)})

    def failed(self, exc: Any) -> int:
        print_json_line({"type": "error", "code": exc.code, "message": exc.message})
        return super().failed(exc)

    def show(self, event: dict[str, Any]) -> None:
        print_json_line(event)

    def follow(self, ctx: typer.Context, task_id: str) -> dict[str, Any]:
        c = client(ctx)
        prompter = follow_module.InputPrompter(c, task_id, may_ask=False)

        def on_event(event: dict[str, Any]) -> None:
            print_json_line({"type": "event", "event": event})
            if event.get("kind") == "status" and as_dict(event.get("data")).get("status") == "requires_input":
                prompter(event)

        try:
            return follow_module.follow(c, task_id, on_event)
        except KeyboardInterrupt:
            print_json_line({"type": "interrupted", "task_id": task_id})
            raise typer.Exit(130) from None

    def result(self, reply: str, task_ids: list[str], task: dict[str, Any] | None, code: int) -> None:
        print_json_line(
            {"type": "result", "reply": reply, "task_ids": task_ids, "task": task, "exit_code": code}
        )


def _confirm() -> bool:
    try:
        return bool(typer.confirm("Go ahead?", default=False))
    except typer.Abort:
        return False


def _cut(text: str, width: int = 200) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
