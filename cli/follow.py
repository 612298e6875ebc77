"""Showing an execution's events as they happen, and answering it when it asks.

`follow` reads the SDK's event stream until the task ends; `EventPrinter` turns each event
into terminal output (message deltas run inline, tools and logs one line each). When the
task parks in `requires_input`, a person at a terminal is asked for the answer; anyone else
is told the command that answers it, and following goes on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from cli.common import as_dict, as_list, client, escape, is_api_error, state, wire
from cli.output import console, err_console, plain, print_json_line, status_text

if TYPE_CHECKING:
    from rich.console import Console

    from sdk.client import ControlPlaneClient

__all__ = [
    "EXIT_CODES",
    "EventPrinter",
    "InputPrompter",
    "ask",
    "exit_code",
    "follow",
    "hint_respond",
    "stdin_is_tty",
]

# completed 0, failed 1, cancelled 130 (what a shell reports for an interrupted command).
EXIT_CODES = {"completed": 0, "failed": 1, "cancelled": 130}
# Where runtimes put text in messages, deltas and results.
TEXT_KEYS = ("text", "delta", "content", "message", "output")
STDOUT_MEMORY = 256_000


def exit_code(status: str | None) -> int:
    return EXIT_CODES.get(status or "", 0)


def stdin_is_tty() -> bool:
    """Whether a person can be asked; a function so tests can say yes."""
    return sys.stdin.isatty()


def follow(
    c: ControlPlaneClient,
    task_id: str,
    on_event: Callable[[dict[str, Any]], None],
    *,
    after: int = 0,
) -> dict[str, Any]:
    """Hand every event after `after` to `on_event` until the task ends; return the Task.

    The SDK's stream reconnects by itself (resuming from the last seq) and ends with the
    `end` item; an iterator that stops without one gets the task's current state.
    """
    from sdk.schemas import StreamEnd  # loaded with the client already

    for event in c.executions.stream(task_id, after=after):
        if isinstance(event, StreamEnd):
            return wire(event.task) if event.task else {}
        on_event(wire(event))
    return wire(c.executions.get(task_id))


class EventPrinter:
    """Renders events for a person; `on_input` is called when the task waits for an answer."""

    def __init__(self, out: Console, on_input: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.out = out
        self.on_input = on_input
        self._inline = False  # a message is being streamed on the current line
        self._streamed = False  # deltas printed since the last full `message`
        self.last_message: str | None = None
        self.error_shown = False
        self.last_status: str | None = None
        self._stdout: list[str] = []
        self._stdout_size = 0
        self._stdout_overflow = False

    def __call__(self, event: dict[str, Any]) -> None:
        kind = str(event.get("kind") or "")
        data = as_dict(event.get("data"))
        if kind == "message_delta":
            text = _text(data)
            if text:
                self.out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
                self._inline = self._streamed = True
            return
        self.end_line()
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data, event)
        else:
            self._dim(f"{kind}: {_short(data)}")

    def end_line(self) -> None:
        if self._inline:
            self.out.print()
            self._inline = False

    def _dim(self, text: str) -> None:
        self.out.print(f"[dim]{escape(text)}[/]", soft_wrap=True)

    def _on_status(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        status = data.get("status")
        self.last_status = str(status)
        line = f"● {status_text(status)}"
        if data.get("from"):
            line += f" [dim](from {escape(str(data['from']))})[/]"
        if data.get("worker_id"):
            line += f" [dim]on {escape(str(data['worker_id']))}[/]"
        extra = {k: v for k, v in data.items() if k not in ("status", "from", "worker_id", "error")}
        extra = {k: v for k, v in extra.items() if v not in (None, "", {}, [])}
        if extra:
            line += f" [dim]{escape(_short(extra))}[/]"
        self.out.print(line, soft_wrap=True)
        error = as_dict(data.get("error"))
        if error:
            self._error(error)
        if status == "requires_input" and self.on_input is not None:
            self.on_input(event)

    def _error(self, error: dict[str, Any]) -> None:
        self.error_shown = True
        message, code = plain(error.get("message")), plain(error.get("code"))
        self.out.print(f"  [red]{escape(message)}[/] ({escape(code)})", soft_wrap=True)

    def _on_log(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        if "line" in data:
            raw = str(data.get("line", "")).rstrip("\n")
            stream = data.get("stream")
            if stream != "stderr":
                self._remember_stdout(raw)
            line = escape(raw)
            self.out.print(f"[yellow]{line}[/]" if stream == "stderr" else line, soft_wrap=True)
            return
        level = str(data.get("level") or "info").lower()
        style = {"error": "red", "warning": "yellow", "warn": "yellow", "debug": "dim"}.get(level, "")
        text = escape(f"[{level}] {plain(data.get('message'))}")
        self.out.print(f"[{style}]{text}[/]" if style else text, soft_wrap=True)

    def _remember_stdout(self, line: str) -> None:
        # Kept to tell whether the result repeats the output; past a bound, assume it does.
        self._stdout_size += len(line) + 1
        if self._stdout_size > STDOUT_MEMORY:
            self._stdout_overflow, self._stdout = True, []
        elif not self._stdout_overflow:
            self._stdout.append(line)

    def _on_message_reset(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        # A terminal cannot take back what it printed: say that it no longer counts.
        self._streamed = False
        why = plain(data.get("reason")) or "retried"
        self._dim(f"↺ the text above is discarded: {why}; the model answers again")

    def _on_message(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        text = _text(data)
        self.last_message = text or self.last_message
        if self._streamed:  # its deltas are already on screen
            self._streamed = False
            return
        if text:
            self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def _on_tool_started(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        args = data.get("args", data.get("arguments", data.get("input")))
        suffix = f" {_short(args, 80)}" if args not in (None, {}, "") else ""
        self._tool_line("cyan", "→", f"{_tool_name(data)}{suffix}")

    def _on_tool_completed(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        failed = bool(data.get("error")) or data.get("status") in ("failed", "denied", "interrupted")
        took = data.get("duration_ms")
        took = took / 1000 if isinstance(took, int | float) else None
        detail = f" ({took:.1f}s)" if isinstance(took, int | float) else ""
        if failed:
            detail += f": {_short(data.get('error') or data.get('output'), 100)}"
        self._tool_line("red" if failed else "green", "✗" if failed else "✓", _tool_name(data) + detail)

    def _on_tool_output(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        self._dim(f"  {_short(data.get('chunk', data), 120)}")

    def _tool_line(self, style: str, mark: str, text: str) -> None:
        self.out.print(f"[{style}]{mark}[/] {escape(text)}", soft_wrap=True)

    def _on_input_requested(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        self.out.print(f"[bold magenta]?[/] {escape(plain(data.get('question')))}", soft_wrap=True)
        choices = as_list(data.get("choices"))
        if choices:
            self._dim("  choices: " + ", ".join(str(c) for c in choices))

    def _on_input_received(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        self._dim(f"↳ answered: {plain(data.get('answer', data))}")

    def _on_artifact(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        size = data.get("size")
        self._dim(f"artifact {data.get('name')}" + (f" ({size} bytes)" if size is not None else ""))

    def _on_plan(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        steps: object = data.get("steps")
        if isinstance(steps, list):
            self._dim("plan:")
            for step in as_list(data.get("steps")):
                self._dim(f"  - {plain(_title(step))}")
        else:
            self._dim(f"plan: {_short(data)}")

    def _on_checkpoint(self, _data: dict[str, Any], _event: dict[str, Any]) -> None:
        return  # internal resume state; nothing a person needs to read

    def _on_usage(self, data: dict[str, Any], _event: dict[str, Any]) -> None:
        self._dim(f"usage: {_short(data)}")

    def finish(self, task: dict[str, Any]) -> None:
        """The closing lines: how the execution ended, and its result unless already shown."""
        self.end_line()
        status = task.get("status")
        took = task.get("duration_seconds")
        took_text = f"{took:.1f}s" if isinstance(took, int | float) else ""
        if status == self.last_status:
            if took_text:
                self.out.print(f"[dim]took {took_text}[/]")
        else:
            self.out.print(f"● {status_text(status)}" + (f" in {took_text}" if took_text else ""))
        error = as_dict(task.get("error"))
        if status == "failed" and error and not self.error_shown:
            self._error(error)
        result: object = task.get("result")
        if status != "completed" or result in (None, "", {}, []):
            return
        fields = as_dict(result)
        text = _text(fields) if isinstance(result, dict) else plain(result)
        if isinstance(result, dict) and not any(k in fields for k in TEXT_KEYS):
            text = plain(result)  # structured result with no text: show it as JSON
        if text.strip() and not self._already_shown(text):
            self.out.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)

    def _already_shown(self, text: str) -> bool:
        # A command's output arrived as stdout log lines; an LLM's answer as message deltas.
        if self.last_message is not None and text.strip() == self.last_message.strip():
            return True
        if self._stdout_overflow:
            return True
        return bool(self._stdout) and text.strip() == "\n".join(self._stdout).strip()


class InputPrompter:
    """Answers `requires_input`: asks the person at the terminal, or says how to answer."""

    def __init__(self, c: ControlPlaneClient, task_id: str, *, may_ask: bool) -> None:
        self.c = c
        self.task_id = task_id
        self.may_ask = may_ask
        self._hinted: set[str] = set()

    def __call__(self, _event: dict[str, Any]) -> None:
        # The stream replays history, so this status may be long answered: ask the task.
        task = wire(self.c.executions.get(self.task_id))
        pending = as_dict(task.get("pending_input"))
        if task.get("status") != "requires_input" or not pending:
            return
        if self.may_ask and stdin_is_tty():
            answer = ask(pending)
            if answer is not None:
                self._send(answer)
                return
        key = json.dumps(pending, sort_keys=True, default=str)
        if key not in self._hinted:
            self._hinted.add(key)
            hint_respond(self.task_id, pending)

    def _send(self, answer: str) -> None:
        try:
            self.c.executions.respond(self.task_id, answer)
        except Exception as exc:
            # Someone answered first (the board, Slack): the stream shows what happens next.
            if is_api_error(exc) and getattr(exc, "status", None) == 409:
                detail = escape(str(getattr(exc, "detail", exc)))
                err_console().print(f"[yellow]answer not sent: {detail}[/]")
                return
            raise


def ask(pending: dict[str, Any]) -> str | None:
    """Ask the person; None when they decline (end of input), so the caller prints a hint."""
    question = plain(pending.get("question"))
    choices = [str(c) for c in as_list(pending.get("choices"))]
    typer.echo(typer.style(f"? {question}", bold=True))
    for number, choice in enumerate(choices, start=1):
        typer.echo(f"  {number}) {choice}")
    label = f"answer [1-{len(choices)} or the choice]" if choices else "answer"
    while True:
        try:
            reply = str(typer.prompt(label)).strip()
        except typer.Abort:
            typer.echo()
            return None
        if not choices:
            if reply:
                return reply
            continue
        picked = _pick(reply, choices)
        if picked is not None:
            return picked
        typer.echo(f"  pick one of 1-{len(choices)} or type a choice exactly")


def _pick(reply: str, choices: list[str]) -> str | None:
    if reply.isdigit() and 1 <= int(reply) <= len(choices):
        return choices[int(reply) - 1]
    for choice in choices:
        if reply.casefold() == choice.casefold():
            return choice
    return None


def hint_respond(task_id: str, pending: dict[str, Any]) -> None:
    choices = as_list(pending.get("choices"))
    example = str(choices[0]) if choices else "..."
    err_console().print(
        f"[magenta]waiting for an answer[/]; answer with: "
        f"[bold]{escape(f'meta-agent execution respond {task_id} {json.dumps(example)}')}[/]",
        soft_wrap=True,
    )


def _text(data: object) -> str:
    """The text of a message, delta or result, whatever key the runtime used."""
    if isinstance(data, str):
        return data
    fields = as_dict(data)
    for key in TEXT_KEYS:
        value: object = fields.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):  # content blocks: [{"type": "text", "text": ...}]
            return "".join(str(block.get("text", "")) for block in map(as_dict, as_list(fields.get(key))))
    return ""


def _title(step: object) -> object:
    """A plan step: its title, or the step itself."""
    fields = as_dict(step)
    return fields.get("title", fields) if isinstance(step, dict) else step


def _tool_name(data: dict[str, Any]) -> str:
    return str(data.get("tool") or data.get("name") or data.get("tool_name") or "tool")


def _short(value: Any, width: int = 160) -> str:
    text = plain(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def follow_and_exit(ctx: typer.Context, task_id: str, *, json_out: bool, may_ask: bool) -> NoReturn:
    """Follow a task to its end, printing (or JSON lines), and exit with its status's code."""
    c = client(ctx)
    # JSON followers get events on stdout and, on stderr, how to answer a question.
    prompter = InputPrompter(c, task_id, may_ask=may_ask and not json_out)
    printer = None if json_out else EventPrinter(console(), on_input=prompter)

    def on_event(event: dict[str, Any]) -> None:
        if printer is not None:
            printer(event)
            return
        print_json_line(event)
        if event.get("kind") == "status" and as_dict(event.get("data")).get("status") == "requires_input":
            prompter(event)

    try:
        task = follow(c, task_id, on_event)
    except KeyboardInterrupt:
        if state(ctx).local_queue:
            err_console().print("\n[dim]stopped; the execution is cancelled with its local worker[/]")
        else:
            err_console().print(
                f"\n[dim]stopped following; the execution goes on: meta-agent execution logs {escape(task_id)} -f[/]"
            )
        raise typer.Exit(130) from None
    if printer is None:
        print_json_line({"kind": "end", "task": task})
    else:
        printer.finish(task)
    raise typer.Exit(exit_code(task.get("status")))
