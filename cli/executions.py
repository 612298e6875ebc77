"""`exec` (start an execution) and `execution ...` (look at and act on executions)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from cli.common import JsonOption, client, escape, parse_params, state, wire
from cli.follow import EventPrinter, exit_code, follow_and_exit, hint_respond
from cli.output import (
    age,
    console,
    err_console,
    first_line,
    print_json,
    print_json_line,
    status_text,
    table,
)
from kernel.failures import FailureClass
from kernel.statuses import TaskStatus

if TYPE_CHECKING:
    from rich.table import Table

    from sdk.schemas import TaskOut

__all__ = ["chat", "exec_app", "execution_app"]

META_AGENT_COMMAND = "meta"


class _ExecGroup(TyperGroup):
    """`exec agent NAME PROMPT` is a subcommand; `exec PROMPT` goes to the meta agent."""

    # typer hands its own Context (a click.Context subclass) to every group it builds.
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # pyright: ignore[reportIncompatibleMethodOverride]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [META_AGENT_COMMAND, *args]
        return super().parse_args(ctx, args)


exec_app = typer.Typer(
    cls=_ExecGroup,
    no_args_is_help=True,
    help='Start an execution: `exec agent NAME "prompt"` (or `exec "prompt"` for the meta agent).',
)
execution_app = typer.Typer(
    no_args_is_help=True,
    help="List executions, watch their events, cancel, retry and answer them. Ids are full ids.",
)


class TaskType(StrEnum):
    agent = "agent"
    team = "team"


IdArg = Annotated[str, typer.Argument(help="The execution's full id (prefixes are not accepted).")]
FollowOption = Annotated[bool, typer.Option("--follow", "-f", help="Stream events until it ends.")]


# The meta agent's options, shared by `exec "prompt"` and `chat`.
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve the agent's plans without asking.")]
ModelOpt = Annotated[
    str | None, typer.Option(envvar="META_AGENT_MODEL", help="The meta agent's litellm model.")
]
ApiBaseOpt = Annotated[
    str | None, typer.Option(envvar="META_AGENT_LLM_API_BASE", help="api_base for the model calls.")
]
ApiKeyOpt = Annotated[
    str | None, typer.Option(envvar="META_AGENT_LLM_API_KEY", help="api_key for the model calls.")
]
McpOpt = Annotated[
    bool,
    typer.Option(
        "--mcp",
        envvar="META_AGENT_MCP",
        help="Reach the agent's tools over the control plane's MCP endpoint (--url + /mcp, "
        "Streamable HTTP, the API key as bearer token) instead of in this process.",
    ),
]
McpUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--mcp-url",
        envvar="META_AGENT_MCP_URL",
        help="Like --mcp, with this MCP endpoint (e.g. https://cp.example.com/mcp).",
        show_default=False,
    ),
]
LocalOpt = Annotated[
    bool,
    typer.Option(
        "--local",
        envvar="META_AGENT_LOCAL",
        help="Run the execution on a throw-away worker started here, in --cwd, on a new queue "
        "that is deleted afterwards (the execution is cancelled if the command stops first).",
    ),
]
CwdOpt = Annotated[
    Path | None,
    typer.Option(
        "--cwd",
        envvar="META_AGENT_CWD",
        help="With --local: the execution's working directory (default: the current one).",
        exists=True,
        file_okay=False,
        dir_okay=True,
        resolve_path=True,
        show_default=False,
    ),
]


def _local_dir(local: bool, cwd: Path | None) -> Path | None:
    """The directory of a --local run; None without --local (--cwd alone is a mistake)."""
    if cwd is not None and not local:
        raise typer.BadParameter("--cwd needs --local (a remote worker has its own directories)")
    return (cwd or Path.cwd()) if local else None


def _mcp_endpoint(ctx: typer.Context, mcp: bool, mcp_url: str | None) -> str | None:
    if mcp_url:
        if not mcp_url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{mcp_url!r} is not an http(s) URL", param_hint="'--mcp-url'")
        return mcp_url
    return state(ctx).url if mcp else None


@exec_app.command(META_AGENT_COMMAND, hidden=True)
def exec_meta(
    ctx: typer.Context,
    prompt: Annotated[list[str], typer.Argument(help="What you want done, in your words.")],
    yes: YesOpt = False,
    model: ModelOpt = None,
    llm_api_base: ApiBaseOpt = None,
    llm_api_key: ApiKeyOpt = None,
    mcp: McpOpt = False,
    mcp_url: McpUrlOpt = None,
    local: LocalOpt = False,
    cwd: CwdOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Hand the prompt to the meta agent, which picks the agent and queue, plans and follows.

    Exit code: the task's (0 completed, 1 failed, 130 cancelled); 2 without a model.
    --json: one JSON object per line (agent events, the task's events, then the result).
    """
    from cli.meta import run_exec

    code = run_exec(
        ctx,
        " ".join(prompt),
        yes=yes,
        model=model,
        api_base=llm_api_base,
        api_key=llm_api_key,
        mcp_url=_mcp_endpoint(ctx, mcp, mcp_url),
        cwd=_local_dir(local, cwd),
        json_out=json_out,
    )
    raise typer.Exit(code)


def chat(
    ctx: typer.Context,
    yes: YesOpt = False,
    model: ModelOpt = None,
    llm_api_base: ApiBaseOpt = None,
    llm_api_key: ApiKeyOpt = None,
    mcp: McpOpt = False,
    mcp_url: McpUrlOpt = None,
) -> None:
    """Talk to the meta agent: ask for work, answer its questions, follow up ("retry it")."""
    from cli.meta import run_chat

    raise typer.Exit(
        run_chat(
            ctx,
            yes=yes,
            model=model,
            api_base=llm_api_base,
            api_key=llm_api_key,
            mcp_url=_mcp_endpoint(ctx, mcp, mcp_url),
        )
    )


@exec_app.command("agent")
def exec_agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name or id.")],
    prompt: Annotated[str, typer.Argument(help="What to do; `-` reads it from stdin.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="An agent parameter (repeatable)."),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", envvar="META_AGENT_QUEUE", help="Worker queue (default: the agent's)."),
    ] = None,
    follow: FollowOption = False,
    local: LocalOpt = False,
    cwd: CwdOpt = None,
    llm_api_base: ApiBaseOpt = None,
    llm_api_key: ApiKeyOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Run an agent on a prompt; with --follow, stream it live and answer its questions.

    Exit code with --follow (implied by --local): 0 completed, 1 failed, 130 cancelled.
    """
    parameters = parse_params(param)
    workdir = _local_dir(local, cwd)
    if workdir is not None and queue:
        raise typer.BadParameter("--queue and --local do not go together (--local makes its own queue)")
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="'PROMPT'")
    if workdir is not None:
        from cli.local import LocalWorker
        from cli.meta import user_name

        with LocalWorker(
            ctx, workdir, user=user_name(), llm_api_base=llm_api_base, llm_api_key=llm_api_key
        ) as local_queue:
            if json_out:
                print_json_line({"type": "local", "queue": local_queue, "cwd": str(workdir)})
            else:
                err_console().print(
                    f"[dim]local worker on queue {escape(local_queue)} in {escape(str(workdir))}[/]"
                )
            _start(ctx, name, prompt, parameters, local_queue, follow=True, json_out=json_out)
        return
    _start(ctx, name, prompt, parameters, queue, follow=follow, json_out=json_out)


def _start(
    ctx: typer.Context,
    name: str,
    prompt: str,
    parameters: dict[str, str],
    queue: str | None,
    *,
    follow: bool,
    json_out: bool,
) -> None:
    c = client(ctx)
    task = c.executions.create(agent=name, queue=queue, prompt=prompt, parameters=parameters or None)
    task_id = task.id
    if json_out and not follow:
        print_json(wire(task))
        return
    if not json_out:
        out = console()
        out.print(
            f"execution [bold]{task_id}[/] {status_text(task.status)} on queue {escape(task.queue or '-')}",
            highlight=False,
        )
        out.print(f"board: {state(ctx).board_link(task_id)}", markup=False, highlight=False)
        if not follow:
            out.print(f"[dim]follow it: meta-agent execution logs {task_id} --follow[/]", soft_wrap=True)
            return
    follow_and_exit(ctx, task_id, json_out=json_out, may_ask=not json_out)


@execution_app.command("list")
def list_executions(
    ctx: typer.Context,
    status: Annotated[TaskStatus | None, typer.Option(help="Only this status.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this worker queue.")] = None,
    type_: Annotated[
        TaskType | None,
        typer.Option("--type", envvar="META_AGENT_EXECUTION_LIST_TYPE", help="Agent or team executions."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Only from this source (cli, slack, mcp, board...).")
    ] = None,
    q: Annotated[str | None, typer.Option("--q", help="Text search in prompts.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page, from a previous list.")] = None,
    failure: Annotated[
        FailureClass | None,
        typer.Option(help="Only failed executions of this failure class.", show_default=False),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """List executions, newest first."""
    page = client(ctx).executions.list(
        status=status.value if status else None,
        agent=agent,
        team=team,
        queue=queue,
        type=type_.value if type_ else None,
        source=source,
        q=q,
        limit=limit,
        cursor=cursor,
        failure=failure.value if failure else None,
    )
    if json_out:
        print_json(wire(page))
        return
    items = page.items
    out = console()
    if not items:
        out.print("no executions match", style="dim")
        return
    out.print(executions_table(items, width=out.width))
    if page.next_cursor:
        out.print(f"[dim]more: meta-agent execution list --cursor {page.next_cursor}[/]", soft_wrap=True)


def executions_table(items: list[TaskOut], *, width: int) -> Table:
    """Ids stay whole (commands take full ids only): on a narrow terminal the queue and
    source columns go and the prompt is cut to the space left."""
    wide = width >= 120
    columns = ["ID", "STATUS", "AGENT", *(["QUEUE", "SOURCE"] if wide else []), "AGE", "PROMPT"]
    t = table(*columns)
    t.expand = True
    for column in t.columns[:-1]:
        column.no_wrap = True
    t.columns[0].min_width = 36
    prompt = t.columns[-1]
    prompt.ratio, prompt.no_wrap, prompt.overflow, prompt.min_width = 1, True, "ellipsis", 10
    for task in items:
        who = task.agent or (f"team:{task.team}" if task.team else "-")
        where = [task.queue or "-", task.source or "-"] if wide else []
        t.add_row(
            task.id,
            status_text(task.status),
            escape(who),
            *map(escape, where),
            age(task.created_at),
            escape(first_line(task.prompt, 80)),
        )
    return t


@execution_app.command("get")
def get_execution(ctx: typer.Context, task_id: IdArg, json_out: JsonOption = False) -> None:
    """Show one execution: status, question, error, the plan, the steps (tool calls and
    sub-tasks, with durations), the environment and the result (--json: under `detail`)."""
    from cli.detail import execution_detail, print_detail

    c = client(ctx)
    task = c.executions.get(task_id)
    detail = execution_detail(c, task)
    if json_out:
        print_json({**wire(task), "detail": detail})
        return
    print_detail(task, detail, link=state(ctx).board_link(task_id))


@execution_app.command("logs")
def logs(
    ctx: typer.Context, task_id: IdArg, follow: FollowOption = False, json_out: JsonOption = False
) -> None:
    """Print an execution's events (--json: one event per line).

    Exits 1 if the execution failed, 130 if it was cancelled.
    """
    if follow:
        follow_and_exit(ctx, task_id, json_out=json_out, may_ask=False)
    c = client(ctx)
    printer = None if json_out else EventPrinter(console())
    after, status = 0, None
    while True:
        page = c.executions.events(task_id, after=after)
        status = page.status
        for event in page.items:
            if printer is None:
                print_json_line(wire(event))
            else:
                printer(wire(event))
            after = max(after, event.seq)
        if not page.items or after >= page.last_seq:
            break
    if printer is not None:
        printer.end_line()
        if status == "requires_input":
            pending = c.executions.get(task_id).pending_input
            hint_respond(task_id, pending.model_dump(mode="json") if pending else {})
    raise typer.Exit(exit_code(status))


def _action_output(ctx: typer.Context, task: TaskOut, message: str, json_out: bool) -> None:
    if json_out:
        print_json(wire(task))
        return
    out = console()
    out.print(message, highlight=False)
    out.print(f"board: {state(ctx).board_link(task.id)}", markup=False, highlight=False)


@execution_app.command("cancel")
def cancel(ctx: typer.Context, task_id: IdArg, json_out: JsonOption = False) -> None:
    """Cancel an execution (a running one stops when its worker sees the request)."""
    task = client(ctx).executions.cancel(task_id)
    if task.status == "cancelled":
        message = f"{escape(task_id)} {status_text('cancelled')}"
    else:
        message = f"{escape(task_id)}: cancel requested; its worker stops it ({status_text(task.status)})"
    _action_output(ctx, task, message, json_out)


@execution_app.command("retry")
def retry(ctx: typer.Context, task_id: IdArg, json_out: JsonOption = False) -> None:
    """Run a finished execution again, as a new execution."""
    task = client(ctx).executions.retry(task_id)
    message = f"execution [bold]{task.id}[/] {status_text(task.status)} (retry of {escape(task_id)})"
    _action_output(ctx, task, message, json_out)


@execution_app.command("respond")
def respond(
    ctx: typer.Context,
    task_id: IdArg,
    answer: Annotated[str, typer.Argument(help="The answer to the execution's question.")],
    json_out: JsonOption = False,
) -> None:
    """Answer an execution waiting in requires_input; it goes back to its queue."""
    task = client(ctx).executions.respond(task_id, answer)
    message = f"{escape(task_id)} answered, now {status_text(task.status)}"
    _action_output(ctx, task, message, json_out)
