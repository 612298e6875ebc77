"""`schedules create|list|get|pause|resume|delete`: executions started by cron."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOption, client, escape, parse_params, state, wire
from cli.output import console, first_line, one_line_columns, print_json, status_text, table

if TYPE_CHECKING:
    from sdk.schedules import ScheduleOut

__all__ = ["schedules_app"]

schedules_app = typer.Typer(
    no_args_is_help=True, help="Start executions on a cron schedule: create, list, pause, resume, delete."
)

NameArg = Annotated[str, typer.Argument(help="Schedule name or id.")]


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A time in the reader's local zone (the schedule's own zone is shown beside it)."""
    if value is None:
        return "-"
    return value.astimezone().strftime(fmt)


@schedules_app.command("create")
def create_schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique slug, e.g. morning-report.")],
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent each run starts.")],
    cron: Annotated[
        str, typer.Option(help='Five-field cron: minute hour day month weekday, e.g. "0 8 * * 1-5".')
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What each run is asked to do.")],
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Worker queue (default: the agent's).")
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone the cron is read in.")] = "UTC",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Parameter KEY=VALUE for every run (repeatable).")
    ] = None,
    catchup: Annotated[
        str, typer.Option(help="A run missed while the control plane was down: once | skip.")
    ] = "once",
    overlap: Annotated[
        str, typer.Option(help="A run due while the previous is unfinished: skip | queue | cancel.")
    ] = "skip",
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            help="Post each run to Slack: slack:#channel or slack:CHANNEL_ID (a message per run, "
            "progress and result in its thread; needs Slack configured on the server).",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a schedule; its first run is the next due time of --cron in --tz."""
    body = {
        "name": name,
        "agent": agent,
        "queue": queue,
        "cron": cron,
        "timezone": tz,
        "prompt": prompt,
        "parameters": parse_params(param),
        "catchup": catchup,
        "overlap": overlap,
        "paused": paused,
        "notify": notify or [],
    }
    made = client(ctx).schedules.create(body)
    if json_out:
        print_json(wire(made))
        return
    out = console()
    out.print(f"schedule [bold]{escape(made.name)}[/] [green]created[/]", highlight=False)
    if made.next_run_at:
        out.print(f"next run: {_when(made.next_run_at)} ({escape(made.cron)} in {escape(made.timezone)})")
    if made.notify:
        out.print(f"each run is posted to {escape(', '.join(made.notify))}", highlight=False)


@schedules_app.command("list")
def list_schedules(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many.")] = 100,
    json_out: JsonOption = False,
) -> None:
    """List schedules: next run (in your time zone) and how the last run went."""
    page = client(ctx).schedules.list(limit=limit)
    if json_out:
        print_json(wire(page))
        return
    out = console()
    if not page.items:
        out.print('no schedules yet: `meta-agent schedules create NAME --agent A --cron "0 8 * * 1-5" ...`')
        return
    # Narrow enough for 80 columns; `get` shows the rest (agent, last run's time and task).
    notifies = any(s.notify for s in page.items)  # the column only when a schedule posts
    t = table("NAME", "CRON", "TZ", "NEXT RUN", "LAST RUN", *(["NOTIFY"] if notifies else []))
    for s in page.items:
        row = [
            escape(s.name),
            escape(s.cron),
            escape(s.timezone),
            "[yellow]paused[/]" if s.paused else _when(s.next_run_at, "%m-%d %H:%M"),
            status_text(s.last_task_status) if s.last_task_status else escape(s.last_outcome or "never"),
        ]
        if notifies:
            row.append(_notify_text(s))
        t.add_row(*row)
    one_line_columns(t, width=out.width)
    out.print(t)
    if page.next_cursor:
        out.print(f"[dim]more than {limit}: raise --limit (up to 200) or use the API's cursor[/]")


@schedules_app.command("get")
def get_schedule(ctx: typer.Context, name: NameArg, json_out: JsonOption = False) -> None:
    """Show one schedule."""
    _show(ctx, client(ctx).schedules.get(name), json_out)


@schedules_app.command("pause")
def pause_schedule(ctx: typer.Context, name: NameArg, json_out: JsonOption = False) -> None:
    """Stop starting runs; a run already started goes on."""
    _show(ctx, client(ctx).schedules.pause(name), json_out)


@schedules_app.command("resume")
def resume_schedule(ctx: typer.Context, name: NameArg, json_out: JsonOption = False) -> None:
    """Start runs again from the next due time (times missed while paused are not made up)."""
    _show(ctx, client(ctx).schedules.resume(name), json_out)


@schedules_app.command("delete")
def delete_schedule(ctx: typer.Context, name: NameArg, json_out: JsonOption = False) -> None:
    """Delete a schedule; the executions it started are kept."""
    client(ctx).schedules.delete(name)
    if json_out:
        print_json({"deleted": name})
        return
    console().print(f"schedule [bold]{escape(name)}[/] [green]deleted[/]", highlight=False)


def _notify_text(s: ScheduleOut) -> str:
    """Where runs are posted, and how the last one went when it did not simply work."""
    if not s.notify:
        return "-"
    where = escape(", ".join(s.notify))
    state = s.last_notify or ""
    if state.startswith(("failed", "not delivered")):
        return f"{where} [red]({escape(state)})[/]"
    return f"{where} [dim]({state})[/]" if state else where


def _show(ctx: typer.Context, s: ScheduleOut, json_out: bool) -> None:
    if json_out:
        print_json(wire(s))
        return
    out = console()
    rows: list[tuple[str, str]] = [
        ("name", escape(s.name)),
        ("state", "[yellow]paused[/]" if s.paused else "active"),
        ("agent", escape(s.agent) + (f" on queue {escape(s.queue)}" if s.queue else "")),
        ("cron", f"{escape(s.cron)} ({escape(s.timezone)})"),
        ("policies", f"catchup {s.catchup}, overlap {s.overlap}"),
        ("next run", _when(s.next_run_at)),
        ("last run", _when(s.last_run_at)),
        ("runs", str(s.runs)),
        ("prompt", escape(first_line(s.prompt, 80))),
    ]
    if s.notify:
        rows.append(("notify", _notify_text(s)))
    if s.last_task_id:
        status = status_text(s.last_task_status) if s.last_task_status else ""
        rows.append(("last task", f"{s.last_task_id} {status} {state(ctx).board_link(s.last_task_id)}"))
    if s.last_outcome and s.last_outcome != "started":
        rows.append(("last outcome", escape(s.last_outcome + (f": {s.last_error}" if s.last_error else ""))))
    for label, value in rows:
        out.print(f"[bold]{label:>12}[/]  {value}", highlight=False)
