"""`bash`: one shell command in the task workspace.

It runs in its own process group, in the worker's sandbox, with an allow-listed environment
(worker.process, worker.sandbox), so the worker's secrets are out of its reach and a timeout
or a cancel kills everything it started.
Output streams as `tool_output` chunks; the model gets the exit code and the output, cut to
its head and tail when long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from worker.builtins.base import ToolEnv, ToolError
from worker.process import base_environment, run_in_group
from worker.runtime import TaskFailed
from worker.sandbox import SandboxUnavailable

__all__ = ["Bash", "clip"]

DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
MODEL_OUTPUT_CHARS = 16_000  # what goes back to the model
STREAM_OUTPUT_BYTES = 2_000_000  # what goes to the event log


def clip(text: str, limit: int = MODEL_OUTPUT_CHARS) -> str:
    """`text`, or its head and tail with a note of what was left out."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters left out ...]\n{text[-half:]}"


class _Collect:
    def __init__(self, env: ToolEnv) -> None:
        self.env = env
        self.parts: list[str] = []
        self.size = 0
        self.streamed = 0

    async def pump(self, reader: asyncio.StreamReader, _stream: str) -> None:
        carry = ""
        while chunk := await reader.read(65536):
            text = chunk.decode("utf-8", "replace")
            # The model sees head and tail; keep a bounded amount of both.
            self.parts.append(text)
            self.size += len(text)
            while self.size > 4 * MODEL_OUTPUT_CHARS and len(self.parts) > 2:
                self.size -= len(self.parts.pop(1))
            if self.streamed < STREAM_OUTPUT_BYTES:
                self.streamed += len(chunk)
                if self.env.ctx.secrets:  # a value cut by two reads would slip past the mask
                    text, carry = _whole_lines(carry + text)
                if text:
                    self.env.output(text)
        if carry:
            self.env.output(carry)


def _whole_lines(text: str, hold: int = 65536) -> tuple[str, str]:
    """`text` up to its last newline, and the rest to send with the next read (all of it once
    the rest is longer than `hold`: an endless line still streams)."""
    cut = text.rfind("\n") + 1
    if cut == 0:
        return ("", text) if len(text) <= hold else (text, "")
    return text[:cut], text[cut:]


class Bash:
    name = "bash"
    description = (
        "Run a bash command in the task's working directory on the worker machine and return its "
        "exit code and output (stdout and stderr together). Long outputs are shortened."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "the bash command line"},
            "timeout": {
                "type": "number",
                "description": f"seconds before it is killed (default {DEFAULT_TIMEOUT:.0f})",
            },
        },
        "required": ["command"],
    }

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        self._base_env = base_env

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("`command` must be a non-empty string")
        try:
            timeout = min(float(args.get("timeout") or DEFAULT_TIMEOUT), MAX_TIMEOUT)
        except (TypeError, ValueError) as exc:
            raise ToolError("`timeout` must be a number of seconds") from exc
        ctx = env.ctx
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        variables = base_environment(self._base_env)
        variables.update(TASK_ID=ctx.id, TASK_WORKSPACE=str(ctx.workspace))
        variables.update(ctx.secrets)  # the agent's named secrets (worker.secrets)
        out = _Collect(env)
        # Cancellation reaches us as asyncio cancellation (the loop races every tool against
        # the task's cancel); run_in_group then kills the whole group at once.
        try:
            run = await run_in_group(
                ["bash", "-c", command],
                cwd=ctx.workspace,
                env=variables,
                pump=out.pump,
                cancelled=asyncio.Event(),
                timeout=timeout,
            )
        except SandboxUnavailable as exc:  # the worker's set-up, not the model's doing: fail loudly
            raise TaskFailed("sandbox_unavailable", str(exc)) from exc
        output = clip("".join(out.parts))
        if run.ended == "timeout":
            raise ToolError(f"timed out after {timeout:g} s and was killed; output so far:\n{output}")
        if run.returncode != 0:
            raise ToolError(f"exit code {run.returncode}\n{output}")
        return f"exit code 0\n{output}"
