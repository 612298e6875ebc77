"""Rendering: JSON for machines, rich tables and detail views for people.

rich is imported inside the functions that draw, so `--json` output never loads it.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.common import escape
from kernel.failures import label as failure_label

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from sdk.schemas import TaskOut

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


def one_line_columns(t: Table, *, width: int, whole: int = 0) -> None:
    """Cells on one line each, clipped with "…"; but the `whole` column (the name people
    type next) never clips: the others give way. The last column (a description) takes what
    is left; a middle column that would leave it under `ROOM` characters is dropped."""
    for column in t.columns:
        column.no_wrap, column.overflow = True, "ellipsis"
    key = t.columns[whole]
    key_width = key.min_width = max([len(str(c)) for c in key.cells] + [len(str(key.header))])
    last = t.columns[-1]

    def left() -> int:  # what the columns other than the key may share
        return width - key_width - _GAP * (len(t.columns) - 1)

    middle = [c for c in t.columns[:-1] if c is not key]
    while middle and left() < ROOM * (len(middle) + 1):
        t.columns.remove(middle.pop())  # rightmost first: the leftmost say most
    for column in middle:
        column.max_width = max(ROOM, min(30, left() // (len(middle) + 1)))
    # rich never narrows a no_wrap column to fit; the last one takes what is left instead.
    t.expand = True
    if last is not key:
        last.ratio, last.min_width = 1, max(1, min(ROOM, left() - sum(c.max_width or 0 for c in middle)))


# Between two columns of `table()`: one space of border and one of padding on each side.
_GAP = 3
ROOM = 10


def status_text(status: str | None) -> str:
    """The status as rich markup in its colour."""
    value = status or "?"
    return f"[{STATUS_STYLES.get(value, 'white')}]{escape(value)}[/]"


def parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
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


def print_task(task: TaskOut, *, link: str, result: bool = True) -> None:
    """The overview of one execution: what, where, how it went, what it waits for."""
    from rich.table import Table

    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value: object) -> None:
        if value not in (None, "", [], {}):
            grid.add_row(label, escape(plain(value)))

    grid.add_row("id", escape(task.id))
    grid.add_row("status", status_text(task.status) + _phase(task.phase))
    row("agent", task.agent)
    row("team", task.team)
    row("queue", task.queue)
    row("source", task.source)
    row("requested by", task.requested_by)
    if task.attempt:
        row("attempt", f"{task.attempt} of {task.max_attempts}" if task.max_attempts else task.attempt)
    row("worker", task.worker_id)
    row("retry of", task.retry_of)
    row("parent", task.parent_id)
    row("created", _when(task.created_at))
    row("started", _when(task.started_at))
    row("finished", _when(task.finished_at))
    if task.duration_seconds is not None:
        row("duration", f"{task.duration_seconds:.1f}s")
    row("prompt", task.prompt)
    row("parameters", task.parameters)
    if task.cancel_requested and task.status == "running":
        grid.add_row("cancel", "[yellow]requested; the worker stops it[/]")
    if task.pending_input is not None:
        row("question", task.pending_input.question)
        if task.pending_input.choices:
            row("choices", ", ".join(task.pending_input.choices))
        grid.add_row("answer with", escape(f'meta-agent execution respond {task.id} "..."'))
    if task.error is not None:
        grid.add_row(
            "error", f"[red]{escape(plain(task.error.message))}[/] ({escape(plain(task.error.code))})"
        )
    if task.failure_class:
        grid.add_row("failure", f"[red]{escape(failure_label(task.failure_class))}[/]")
        row("next step", task.failure_hint)
    if result:
        row("result", task.result)
    row("usage", task.usage)
    grid.add_row("board", escape(link))
    out.print(grid)


def _phase(phase: str | None) -> str:
    return f" [dim]({escape(phase)})[/]" if phase else ""


def json_time(value: datetime) -> str:
    """A time as the API's JSON spells it (what the views have always shown)."""
    from pydantic import TypeAdapter

    return str(TypeAdapter(datetime).dump_python(value, mode="json"))


def _when(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = json_time(value)
    return f"{text} ({age(text)} ago)"
