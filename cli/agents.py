"""`agents list|get|apply|check`: the agents workers can run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import JsonOption, as_dict, as_list, client, escape, is_api_error, wire, wire_list
from cli.output import console, first_line, one_line_columns, plain, print_json, table

if TYPE_CHECKING:
    from sdk.prereqs import AgentCheckOut
    from sdk.schemas import AgentOut

__all__ = ["agents_app", "load_manifest"]

agents_app = typer.Typer(no_args_is_help=True, help="List, show and apply agents.")


@agents_app.command("list")
def list_agents(
    ctx: typer.Context,
    q: Annotated[str | None, typer.Option("--q", help="Text search in names and descriptions.")] = None,
    json_out: JsonOption = False,
) -> None:
    """List agents."""
    items = client(ctx).agents.list(q=q)
    if json_out:
        print_json(wire_list(items))
        return
    out = console()
    if not items:
        out.print("no agents yet: add some with `meta-agent agents apply -f FILE`", style="dim")
        return
    # On a narrow terminal the runtime and queue columns go (`agents get` has them).
    wide = out.width >= 110
    t = table(
        "NAME", *(["RUNTIME"] if wide else []), "MODEL / COMMAND", *(["QUEUE"] if wide else []), "DESCRIPTION"
    )
    for agent in items:
        runtime = [escape(agent.runtime or "-")] if wide else []
        queue = [escape(agent.default_queue or "-")] if wide else []
        t.add_row(
            escape(agent.name),
            *runtime,
            escape(_what_runs(agent)),
            *queue,
            escape(first_line(agent.description)),
        )
    one_line_columns(t, width=out.width)
    out.print(t)


@agents_app.command("get")
def get_agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Show one agent."""
    agent = wire(client(ctx).agents.get(name))
    if json_out:
        print_json(agent)
        return
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, key in (
        ("name", "name"),
        ("id", "id"),
        ("description", "description"),
        ("runtime", "runtime"),
        ("model", "model"),
        ("command", "command"),
        ("default queue", "default_queue"),
        ("timeout", "timeout_seconds"),
        ("risky", "risky"),
        ("tools", "tools"),
        ("secrets", "secrets"),
        ("mcp servers", "mcp_servers"),
        ("policy", "policy"),
        ("instructions", "instructions"),
    ):
        value = agent.get(key)
        if value not in (None, "", [], {}):
            grid.add_row(label, escape(plain(value)))
    requires = {k: v for k, v in as_dict(agent.get("requires")).items() if v not in (None, [], "")}
    if requires:  # what a worker must have to run it (`agents check NAME` says who has)
        grid.add_row("requires", escape(plain(requires)))
    for pname, value in as_dict(agent.get("parameters")).items():
        spec = as_dict(value)
        flags = " (required)" if spec.get("required") else ""
        default = f" [default: {plain(spec['default'])}]" if spec.get("default") is not None else ""
        grid.add_row(f"--param {pname}", escape(f"{spec.get('description') or ''}{flags}{default}"))
    console().print(grid)


@agents_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Option(
            "--file",
            "-f",
            help="YAML or JSON with `agents: [...]` and optional `queues: [...]`; `-` reads stdin.",
        ),
    ],
    json_out: JsonOption = False,
) -> None:
    """Create or replace agents (and create their queues) from a file."""
    queues, agents = load_manifest(file)
    c = client(ctx)
    report: dict[str, list[dict[str, str]]] = {"queues": [], "agents": []}
    for queue in queues:
        try:
            c.queues.create(
                str(queue["name"]),
                description=str(queue.get("description") or ""),
                environment=str(queue.get("environment") or "default"),
            )
            action = "created"
        except Exception as exc:
            # Applying the same file twice is normal: an existing queue is left as it is.
            if not (is_api_error(exc) and getattr(exc, "status", None) == 409):
                raise
            action = "exists"
        report["queues"].append({"name": str(queue["name"]), "action": action})
    existing = {a.name for a in c.agents.list()} if agents else set[str]()
    for agent in agents:
        name = c.agents.apply(agent).name
        report["agents"].append({"name": name, "action": "updated" if name in existing else "created"})
    if json_out:
        print_json(report)
        return
    out = console()
    for kind in ("queues", "agents"):
        for entry in report[kind]:
            style = "green" if entry["action"] == "created" else "dim"
            name = escape(entry["name"])
            out.print(f"{kind[:-1]} [bold]{name}[/] [{style}]{entry['action']}[/]", highlight=False)
    if not queues and not agents:
        out.print("nothing to apply", style="dim")


def load_manifest(file: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(queues, agents) from a manifest; a bad file is a usage error, not a traceback."""
    hint = "'--file'"
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror or exc}", param_hint=hint) from None
    if file.endswith(".json"):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise typer.BadParameter(f"{file} is not valid JSON: {exc}", param_hint=hint) from None
    else:
        import yaml  # YAML is a superset of JSON, so this reads both

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"{file} is not valid YAML: {exc}", param_hint=hint) from None
    # Accept the manifest shape, a bare list of agents, or a single agent.
    doc: object = data
    single, listed = as_dict(doc), as_list(doc)
    if isinstance(doc, list):
        manifest: dict[str, Any] = {"agents": listed}
    elif "name" in single and "agents" not in single:
        manifest = {"agents": [single]}
    elif isinstance(doc, dict):
        manifest = single
    else:
        raise typer.BadParameter(f"{file} should hold `agents: [...]`", param_hint=hint)
    queues: list[Any] = [{"name": q} if isinstance(q, str) else q for q in as_list(manifest.get("queues"))]
    agents = as_list(manifest.get("agents"))
    for kind, entries in (("queue", queues), ("agent", agents)):
        for i, entry in enumerate(entries):
            if not as_dict(entry).get("name"):
                raise typer.BadParameter(f"{kind} #{i + 1} in {file} has no name", param_hint=hint)
    return queues, agents


@agents_app.command("check")
def check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Say which live workers, per queue, can run the agent, and what the others lack.

    Exits 1 when no live worker can run it (a task for it would wait)."""
    answer = client(ctx).prerequisites.check(name)
    if json_out:
        print_json(answer.model_dump(mode="json"))
    else:
        _print_check(answer)
    if not answer.runnable:
        raise typer.Exit(1)


def _print_check(answer: AgentCheckOut) -> None:
    out = console()
    needs = ", ".join(_describe(t) for t in answer.needs) or "nothing"
    out.print(f"agent [bold]{escape(answer.agent)}[/] requires {escape(needs)}", highlight=False)
    if not answer.queues:
        out.print("no worker is live on any queue: start one (`meta-agent worker start --queue NAME`)")
        return
    t = table("QUEUE", "LIVE WORKERS", "CAN RUN IT", "MISSING ON THE CLOSEST WORKER")
    for queue, fit in sorted(answer.queues.items()):
        missing = ", ".join(_describe(m) for m in fit.missing) or "-"
        t.add_row(
            escape(queue), str(fit.live_workers), escape(", ".join(fit.workers) or "none"), escape(missing)
        )
    out.print(t)
    if not answer.runnable:
        out.print(
            "no live worker can run it: its tasks wait until one that has all of it claims", style="yellow"
        )


def _describe(token: str) -> str:
    kind, _, name = token.partition(":")
    return {"bin": name, "env": f"${name}", "mcp": f"MCP {name}", "environment": f"environment {name}"}.get(
        kind, token
    )


def _what_runs(agent: AgentOut) -> str:
    if agent.runtime == "command" and agent.command:
        return first_line(" ".join(agent.command), 40)
    return agent.model or "-"
