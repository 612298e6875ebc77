"""`queues list|create|delete`: the worker queues executions wait in."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import JsonOption, client, escape, wire, wire_list
from cli.output import console, first_line, print_json, table

__all__ = ["queues_app"]

queues_app = typer.Typer(no_args_is_help=True, help="List, create and delete worker queues.")


@queues_app.command("list")
def list_queues(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List worker queues with their live workers and waiting work."""
    items = client(ctx).queues.list()
    if json_out:
        print_json(wire_list(items))
        return
    out = console()
    if not items:
        out.print("no queues yet: `meta-agent queues create NAME`", style="dim")
        return
    t = table("NAME", "ENVIRONMENT", "WORKERS", "CAPACITY", "PENDING", "RUNNING", "DESCRIPTION")
    t.columns[0].no_wrap = True
    for column in t.columns[2:6]:
        column.justify = "right"
    t.columns[6].overflow = "ellipsis"
    t.columns[6].no_wrap = True
    for queue in items:
        workers = queue.active_workers
        t.add_row(
            escape(queue.name),
            escape(queue.environment or "-"),
            str(workers) if workers else "[yellow]0[/]",
            str(queue.capacity),
            str(queue.pending_tasks),
            str(queue.running_tasks),
            escape(first_line(queue.description, 40)),
        )
    out.print(t)


@queues_app.command("create")
def create_queue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name (a slug, e.g. gpu or staging).")],
    description: Annotated[str, typer.Option(help="What runs there.")] = "",
    environment: Annotated[str, typer.Option(help="Environment label.")] = "default",
    json_out: JsonOption = False,
) -> None:
    """Create a worker queue; start workers on it with `meta-agent worker start --queue NAME`."""
    queue = client(ctx).queues.create(name, description=description, environment=environment)
    if json_out:
        print_json(wire(queue))
        return
    out = console()
    created = escape(queue.name)
    out.print(f"queue [bold]{created}[/] [green]created[/]", highlight=False)
    out.print(f"[dim]start a worker: meta-agent worker start --queue {created}[/]")


@queues_app.command("delete")
def delete_queue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Delete a worker queue; refused while executions on it are unfinished or an agent
    uses it as its default queue."""
    client(ctx).queues.delete(name)
    if json_out:
        print_json({"deleted": name})
        return
    console().print(f"queue [bold]{escape(name)}[/] [green]deleted[/]", highlight=False)
