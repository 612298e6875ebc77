"""The `command` runtime: runs the agent's argv template as a subprocess, never via a shell.

A template argument that is exactly `{name}` (`{prompt}` is the prompt) becomes the value as
one argv element, so a value like `x; rm -rf /` stays one inert argument; a value is never
spliced into a larger argument (kernel.argv), so no shell (`bash -c`, `sudo sh -ec`,
`env bash -o pipefail -c`, `python -c` ...) ever sees it as code. Parameters are exported as
`PARAM_<NAME>` (and the prompt as `TASK_PROMPT`): `["bash", "-c", "echo \"$PARAM_HOST\""]`
is how a script reads one. The command gets an allow-listed environment and runs in the
worker's sandbox (worker.sandbox), so the worker's own secrets never reach it.

The command runs in its own session (process group) inside the task workspace; a timeout or
a cancel kills the whole group: SIGTERM, then SIGKILL after a grace period (worker.process).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kernel.argv import embedded, env_name, whole
from worker.process import KILL_GRACE_SECONDS, base_environment, make_workspace, run_in_group
from worker.runtime import Outcome, TaskContext, TaskFailed
from worker.sandbox import SandboxUnavailable
from worker.shapes import as_dict, as_list

__all__ = ["CommandRuntime", "render_argv", "resolve_parameters"]

MAX_OUTPUT_BYTES = 5_000_000
MAX_LINE_BYTES = 16_000
MAX_ARTIFACT_BYTES = 10_000_000
RESULT_TAIL_CHARS = 4000


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def resolve_parameters(ctx: TaskContext) -> dict[str, Any]:
    """Declared defaults < task parameters < answers in `ctx.inputs`; asks for missing required ones."""
    declared: dict[str, Any] = ctx.agent.get("parameters") or {}
    spec = {
        name: shaped if (shaped := as_dict(meta)) is not None else {"description": str(meta)}
        for name, meta in declared.items()
    }
    values: dict[str, Any] = {name: meta.get("default") for name, meta in spec.items()}
    values.update(ctx.parameters)
    values.update(ctx.inputs)
    for name, meta in spec.items():
        if meta.get("required") and _missing(values.get(name)):
            description = meta.get("description")
            question = f"Value for parameter {name}?" + (f" ({description})" if description else "")
            ctx.request_input(question, key=name)
    return values


def render_argv(template: list[str], values: Mapping[str, Any]) -> list[str]:
    """The argv: an element that is exactly `{name}` (or `{name:spec}`) becomes the value,
    every other element stays as written (kernel.argv).

    An element that embeds a name with a value is refused (`unsafe_command`) rather than run
    with the placeholder as text: such an agent was saved before the rule existed.
    """
    reason = embedded(template, values)
    if reason:
        raise TaskFailed("unsafe_command", reason)
    argv: list[str] = []
    for arg in template:
        placeholder = whole(arg)
        if placeholder is None or placeholder[0] not in values:
            argv.append(arg)
            continue
        name, spec = placeholder
        value = values[name]
        try:
            argv.append(format(value, spec) if spec else _text(value))
        except (ValueError, TypeError) as exc:
            raise TaskFailed("invalid_command", f"cannot format {arg} with {value!r}: {exc}") from exc
    return argv


class _Output:
    """Turns the two pipes into `log` events, capped in total, and keeps what the result needs."""

    def __init__(self, ctx: TaskContext, limit: int) -> None:
        self._ctx = ctx
        self._limit = limit
        self._sent = 0
        self._truncated = False
        self._tail: deque[str] = deque()
        self._tail_chars = 0
        self.last_stderr = ""

    @property
    def stdout_tail(self) -> str:
        """The last ~RESULT_TAIL_CHARS characters of stdout."""
        return "".join(self._tail)[-RESULT_TAIL_CHARS:]

    def line(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").removesuffix("\r")
        if stream == "stdout":
            self._tail.append(text + "\n")
            self._tail_chars += len(text) + 1
            while self._tail_chars - len(self._tail[0]) >= RESULT_TAIL_CHARS:
                self._tail_chars -= len(self._tail.popleft())
        elif text.strip():
            self.last_stderr = text.strip()
        if self._truncated:
            return
        self._sent += len(raw) + 1
        if self._sent > self._limit:
            self._truncated = True
            text = f"[output truncated: more than {self._limit} bytes; the rest is not shown]"
        self._ctx.emit("log", {"stream": stream, "line": text})

    async def pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                self.line(stream, raw)
            while len(buf) > MAX_LINE_BYTES:  # an endless line still streams, in pieces
                self.line(stream, buf[:MAX_LINE_BYTES])
                buf = buf[MAX_LINE_BYTES:]
        if buf:
            self.line(stream, buf)


class CommandRuntime:
    """Runs `agent["command"]`; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        base_env: Mapping[str, str] | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> None:
        self._base_env = base_env
        self._max_output = max_output_bytes
        self._max_artifact = max_artifact_bytes
        self._kill_grace = kill_grace

    def argv(self, ctx: TaskContext) -> tuple[list[str], dict[str, Any]]:
        """The argv to run and the resolved parameters (may raise InputRequested)."""
        template = as_list(ctx.agent.get("command"))
        if not template:
            raise TaskFailed(
                "invalid_command", f"agent {ctx.agent.get('name')!r} has no command (a list of argv strings)"
            )
        params = resolve_parameters(ctx)
        values = {**params, "prompt": ctx.prompt}
        return render_argv([str(arg) for arg in template], values), params

    def environment(self, ctx: TaskContext, params: Mapping[str, Any]) -> dict[str, str]:
        """Allow-listed variables of the worker, PARAM_*, TASK_* and the agent's secrets; nothing else."""
        env = base_environment(self._base_env)
        env.update({env_name(k): _text(v) for k, v in params.items()})
        env.update(
            TASK_ID=ctx.id,
            TASK_PROMPT=ctx.prompt,
            TASK_WORKSPACE=str(ctx.workspace),
            TASK_ARTIFACTS=str(ctx.workspace / "artifacts"),
        )
        env.update(ctx.secrets)  # the agent's named secrets (worker.secrets)
        return env

    async def run(self, ctx: TaskContext) -> Outcome:
        """Run the command to its end, a timeout or a cancel."""
        argv, params = self.argv(ctx)
        if ctx.cancelled.is_set():
            raise TaskFailed("cancelled", "cancelled before the command started")
        make_workspace(ctx.workspace)
        output = _Output(ctx, self._max_output)
        try:
            run = await run_in_group(
                argv,
                cwd=ctx.workspace,
                env=self.environment(ctx, params),
                pump=output.pump,
                cancelled=ctx.cancelled,
                timeout=float(ctx.agent["timeout_seconds"]) if ctx.agent.get("timeout_seconds") else None,
                kill_grace=self._kill_grace,
            )
        except FileNotFoundError as exc:
            raise TaskFailed("command_not_found", f"{argv[0]}: command not found") from exc
        except SandboxUnavailable as exc:
            raise TaskFailed("sandbox_unavailable", str(exc)) from exc
        except (OSError, ValueError) as exc:  # permissions, a NUL byte in an argument ...
            raise TaskFailed("command_failed", f"cannot start {argv[0]}: {exc}") from exc
        ended = run.ended
        if ended == "cancelled":
            raise TaskFailed("cancelled", "the command was stopped on request")
        await self._upload_artifacts(ctx)
        if ended == "timeout":
            limit = ctx.agent.get("timeout_seconds")
            raise TaskFailed("timeout", f"the command ran longer than {limit} s and was killed")
        code = run.returncode
        if code != 0:
            detail = f": {output.last_stderr}" if output.last_stderr else ""
            raise TaskFailed("command_failed", f"exit code {code}{detail}")
        return Outcome({"exit_code": 0, "output": output.stdout_tail})

    async def _upload_artifacts(self, ctx: TaskContext) -> None:
        root = ctx.workspace / "artifacts"
        files: list[Path] = []
        # followlinks=False and the symlink check: a link must not smuggle out files elsewhere.
        for dirpath, _dirs, names in os.walk(root, followlinks=False):
            files.extend(p for n in names if not (p := Path(dirpath) / n).is_symlink() and p.is_file())
        for path in sorted(files):
            name = path.relative_to(root).as_posix()
            size = path.stat().st_size
            if size > self._max_artifact:
                ctx.emit(
                    "log",
                    {
                        "level": "warning",
                        "message": f"artifact {name} skipped: {size} bytes is over the limit",
                    },
                )
                continue
            media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            await ctx.save_artifact(name, await asyncio.to_thread(path.read_bytes), media_type)
