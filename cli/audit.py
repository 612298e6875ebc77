"""`audit list|export` (admin) and `execution export`: the audit log, and executions of a
date range with their events.

Exports stream: the server writes the rows as it reads them in batches, and this command
copies the bytes to the file (or stdout) as they arrive, so memory stays flat whatever
the size. A count goes to stderr every 10,000 records, and at the end.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from cli.common import JsonOption, client, escape, wire
from cli.output import console, err_console, first_line, print_json, table

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["audit_app", "export_executions"]

audit_app = typer.Typer(no_args_is_help=True, help="The audit log: who did what, when (admin).")

PROGRESS_EVERY = 10_000


def _time(value: str | None, flag: str) -> datetime | None:
    """An ISO 8601 date or time from the command line; without a zone it is UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or 2026-12-01T08:00:00Z)",
            param_hint=f"'{flag}'",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


Since = Annotated[
    str | None, typer.Option("--since", help="From this ISO date or time (UTC unless it names a zone).")
]
Until = Annotated[str | None, typer.Option("--until", help="Before this ISO date or time (exclusive).")]
Actor = Annotated[str | None, typer.Option("--actor", help="Only this actor (a key's name, slack:U123...).")]
Action = Annotated[
    str | None, typer.Option("--action", help="Only this action, e.g. task.cancel; task.* for a prefix.")
]
Target = Annotated[str | None, typer.Option("--target", help="Only entries about this id or name.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default: stdout).")]


class AuditFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class ExecFormat(StrEnum):
    jsonl = "jsonl"


@audit_app.command("list")
def list_audit(
    ctx: typer.Context,
    actor: Actor = None,
    action: Action = None,
    target: Target = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many (newest first).")] = 50,
    json_out: JsonOption = False,
) -> None:
    """Who did what, newest first."""
    page = client(ctx).audit.list(
        actor=actor,
        action=action,
        target_id=target,
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        limit=limit,
    )
    if json_out:
        print_json(wire(page))
        return
    out = console()
    if not page.items:
        out.print("no audit entries match")
        return
    t = table("WHEN", "ACTOR", "SOURCE", "ACTION", "TARGET")
    for e in page.items:
        t.add_row(
            e.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            escape(f"{e.actor} ({e.actor_kind})"),
            escape(e.source),
            escape(e.action),
            escape(first_line(e.target_id or "", 40)),
        )
    out.print(t)
    if page.next_cursor:
        out.print(f"[dim]more than {limit}: narrow with --since/--until, or use `audit export`[/]")


def _copy(chunks: Iterator[bytes], out: Path | None, what: str) -> int:
    """Write the chunks through, counting records (lines; CSV minus its header) on stderr."""
    err = err_console()
    count = 0
    sink: IO[bytes] = out.open("wb") if out else sys.stdout.buffer
    try:
        for chunk in chunks:
            sink.write(chunk)
            before = count
            count += chunk.count(b"\n")
            if count // PROGRESS_EVERY > before // PROGRESS_EVERY:
                err.print(f"[dim]{count:,} {what} so far…[/]")
        sink.flush()
    finally:
        if out:
            sink.close()
    return count


def _summary(count: int, fmt: str, out: Path | None, what: str, json_out: bool) -> None:
    if json_out:
        data: dict[str, Any] = {"exported": count, "format": fmt, "out": str(out) if out else None}
        if out:
            print_json(data)
        else:  # stdout holds the export itself
            sys.stderr.write(json.dumps(data) + "\n")
        return
    where = f" to {out}" if out else ""
    err_console().print(f"exported {count:,} {what}{escape(where)}", highlight=False)


@audit_app.command("export")
def export_audit(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", help="jsonl (one entry per line) or csv.")] = (
        AuditFormat.jsonl
    ),
    out: Out = None,
    actor: Actor = None,
    action: Action = None,
    json_out: JsonOption = False,
) -> None:
    """Every matching entry, oldest first, streamed to a file or stdout."""
    params = {
        "format": fmt.value,
        "since": _iso(_time(since, "--since")),
        "until": _iso(_time(until, "--until")),
        "actor": actor,
        "action": action,
    }
    count = _copy(client(ctx).download("/api/v1/audit/export", params), out, "entries")
    if fmt == AuditFormat.csv and count:
        count -= 1  # the header row
    _summary(count, fmt.value, out, "entries", json_out)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def export_executions(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    fmt: Annotated[
        ExecFormat, typer.Option("--format", help="jsonl: one execution with its events per line.")
    ] = (ExecFormat.jsonl),
    out: Out = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only these statuses (comma-separated).")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Executions created in a date range, each with its events, streamed to a file or stdout."""
    params = {
        "format": fmt.value,
        "since": _iso(_time(since, "--since")),
        "until": _iso(_time(until, "--until")),
        "status": status,
        "agent": agent,
    }
    count = _copy(client(ctx).download("/api/v1/tasks/export", params), out, "executions")
    _summary(count, fmt.value, out, "executions", json_out)
