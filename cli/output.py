"""Rendering: JSON for machines, rich tables and detail views for people.

rich is imported inside the functions that draw, so `--json` output never loads it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.common import as_dict, as_list, escape

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "STATUS_STYLES",
    "age",
    "console",
    "err_console",
    "first_line",
    "print_json",
    "print_task",
    "status_text",
    "table",
]

STATUS_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "requires_input": "bold magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "dim",
}


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colour, no wrapping."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One JSON document per line, for streams a reader consumes as they come."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def console() -> Console:
    from rich.console import Console

    # soft_wrap: a long line (an id, a command to copy) stays one line instead of breaking
    # at the terminal edge; tables still fit the width.
    return Console(highlight=False, soft_wrap=True)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def table(*columns: str) -> Table:
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in columns:
        t.add_column(name)
    return t


def one_line_columns(t: Table, *, whole: int = 0) -> None:
    """Cells on one line each, clipped with "…"; but the `whole` column (the name people
    type next) never clips: the others give way."""
    for column in t.columns:
        column.no_wrap, column.overflow = True, "ellipsis"
    key = t.columns[whole]
    key.min_width = max([len(str(c)) for c in key.cells] + [len(str(key.header))])
    for column in t.columns[:-1]:
        if column is not key:
            column.max_width = 30
    # rich never narrows a no_wrap column to fit; the last one takes what is left instead.
    t.expand = True
    t.columns[-1].ratio, t.columns[-1].min_width = 1, 10


def status_text(status: str | None) -> str:
    """The status as rich markup in its colour."""
    value = status or "?"
    return f"[{STATUS_STYLES.get(value, 'white')}]{escape(value)}[/]"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # The server writes UTC; a timestamp without an offset is UTC too.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, *, now: datetime | None = None) -> str:
    """`12s`, `5m`, `3h`, `2d`: how long ago a timestamp was."""
    when = parse_time(value)
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def first_line(text: Any, width: int = 60) -> str:
    line = str(text or "").strip().splitlines()[0:1]
    value = line[0] if line else ""
    return value if len(value) <= width else value[: width - 1] + "…"


def plain(value: Any) -> str:
    """A value as one readable string: text as is, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def print_task(task: dict[str, Any], *, link: str) -> None:
    """The overview of one execution: what, where, how it went, what it waits for."""
    from rich.table import Table

    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            grid.add_row(label, escape(plain(value)))

    grid.add_row("id", escape(str(task.get("id"))))
    grid.add_row("status", status_text(task.get("status")) + _phase(task))
    row("agent", task.get("agent"))
    row("team", task.get("team"))
    row("queue", task.get("queue"))
    row("source", task.get("source"))
    row("requested by", task.get("requested_by"))
    attempt, max_attempts = task.get("attempt"), task.get("max_attempts")
    if attempt:
        row("attempt", f"{attempt} of {max_attempts}" if max_attempts else attempt)
    row("worker", task.get("worker_id"))
    row("retry of", task.get("retry_of"))
    row("parent", task.get("parent_id"))
    row("created", _when(task.get("created_at")))
    row("started", _when(task.get("started_at")))
    row("finished", _when(task.get("finished_at")))
    duration = task.get("duration_seconds")
    if isinstance(duration, int | float):
        row("duration", f"{duration:.1f}s")
    row("prompt", task.get("prompt"))
    row("parameters", task.get("parameters"))
    if task.get("cancel_requested") and task.get("status") == "running":
        grid.add_row("cancel", "[yellow]requested; the worker stops it[/]")
    pending: object = task.get("pending_input")
    if isinstance(pending, dict):
        question = as_dict(task.get("pending_input"))
        row("question", question.get("question"))
        if question.get("choices"):
            row("choices", ", ".join(str(c) for c in as_list(question["choices"])))
        grid.add_row("answer with", escape(f'meta-agent execution respond {task.get("id")} "..."'))
    error: object = task.get("error")
    if isinstance(error, dict):
        failure = as_dict(task.get("error"))
        grid.add_row(
            "error", f"[red]{escape(plain(failure.get('message')))}[/] ({escape(plain(failure.get('code')))})"
        )
    row("result", task.get("result"))
    row("usage", task.get("usage"))
    grid.add_row("board", escape(link))
    out.print(grid)


def _phase(task: dict[str, Any]) -> str:
    phase = task.get("phase")
    return f" [dim]({escape(str(phase))})[/]" if phase else ""


def _when(value: Any) -> str | None:
    if not value:
        return None
    return f"{value} ({age(value)} ago)"
