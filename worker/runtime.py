"""The interface between the worker and the agent runtimes (`noop`, `command`, `llm`).

A runtime is an object with ``async run(ctx: TaskContext) -> Outcome``. It ends the task in
one of three ways:

    return Outcome(result, usage)        -> complete
    raise TaskFailed(code, message)      -> fail (the worker reports `cancelled` on a cancel)
    raise InputRequested(question, ...)  -> requires_input (the task is resumed later with
                                            ctx.inputs[key] = the answer, and ctx.checkpoint)

It must watch ``ctx.cancelled`` and stop promptly when it is set; a runtime still running a
few seconds after that is cancelled by the worker (asyncio cancellation), so clean-up belongs
in ``finally`` blocks. Runtimes are imported lazily by name so that importing the worker never
pulls in litellm unless an `llm` task arrives.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from kernel.llm import ModelCallFailed

if TYPE_CHECKING:
    from sdk.client import AsyncControlPlaneClient

__all__ = [
    "InputRequested",
    "Outcome",
    "Runtime",
    "TaskContext",
    "TaskFailed",
    "get_runtime",
    "register_runtime",
]


class TaskFailed(ModelCallFailed):
    """The task failed with a stable `code` (e.g. `timeout`, `command_failed`, `cancelled`).

    A `ModelCallFailed` so that one raised inside a model call (a cancel seen while
    streaming) passes through `kernel.llm.complete` untouched.
    """


class InputRequested(Exception):
    """The task needs a human answer; it parks in Requires Input with this question."""

    def __init__(
        self, question: str, choices: list[str] | None = None, key: str | None = None, checkpoint: Any = None
    ) -> None:
        super().__init__(question)
        self.question = question
        self.choices = choices
        self.key = key
        self.checkpoint = checkpoint


@dataclass
class Outcome:
    """A successful end: the task's `result` (JSON) and optional `usage` (tokens, cost)."""

    result: Any
    usage: dict[str, Any] | None = None


EmitFn = Callable[[str, dict[str, Any]], None]
ArtifactFn = Callable[[str, bytes, str], Awaitable[object]]
CheckpointFn = Callable[[Any], Awaitable[object]]
PhaseFn = Callable[[str], None]


async def _discard(*_: object) -> None:
    return None


@dataclass
class TaskContext:
    """What a runtime gets for one claimed task.

    `task` and `agent` are the dicts of the claim answer; `inputs` holds the answers to
    earlier questions (by key) and `checkpoint` the state saved by an earlier attempt.
    """

    task: dict[str, Any]
    agent: dict[str, Any]
    token: str  # the lease token of the claim: every call on this task carries it
    workspace: Path
    inputs: dict[str, Any] = field(default_factory=dict[str, Any])
    checkpoint: Any = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    on_event: EmitFn | None = None
    on_artifact: ArtifactFn = _discard
    on_checkpoint: CheckpointFn = _discard
    on_phase: PhaseFn | None = None
    # The worker's AsyncControlPlaneClient, for runtimes that act on other tasks (a team
    # coordinator's delegations); None when the runtime runs outside a worker.
    client: AsyncControlPlaneClient | None = None
    # The named secrets the agent lists (worker.secrets), by name: they reach its processes
    # as environment variables, and only them.
    secrets: dict[str, str] = field(default_factory=dict[str, str])

    @property
    def id(self) -> str:
        return str(self.task["id"])

    @property
    def prompt(self) -> str:
        return str(self.task.get("prompt") or "")

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.task.get("parameters") or {})

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for the task's log; the batcher sends it within ~50 ms."""
        if self.on_event is not None:
            self.on_event(kind, data)

    def set_phase(self, phase: str) -> None:
        """Move the task's phase (`planning` -> `executing`) with the next events sent."""
        if self.on_phase is not None:
            self.on_phase(phase)

    async def save_artifact(
        self, name: str, content: bytes, media_type: str = "application/octet-stream"
    ) -> None:
        """Upload a file the task produced (events emitted before it are sent first)."""
        await self.on_artifact(name, content, media_type)

    async def save_checkpoint(self, data: Any) -> None:
        """Persist resumable state; a later attempt (or the resume after an answer) gets it back."""
        await self.on_checkpoint(data)
        self.checkpoint = data

    def request_input(
        self, question: str, choices: list[str] | None = None, key: str | None = None
    ) -> NoReturn:
        """Stop here and ask a human; the answer arrives as `ctx.inputs[key]` on resume."""
        raise InputRequested(question, choices, key, self.checkpoint)


class Runtime(Protocol):
    async def run(self, ctx: TaskContext) -> Outcome: ...


# name -> "module:attribute"; the attribute is a class (instantiated once) or a Runtime object.
_REGISTRY: dict[str, str] = {
    "noop": "worker.runtimes.noop:NoopRuntime",
    "command": "worker.runtimes.command:CommandRuntime",
    "llm": "worker.runtimes.llm:LlmRuntime",
}
_LOADED: dict[str, Runtime] = {}


def register_runtime(name: str, target: str | Runtime) -> None:
    """Add or replace a runtime: a `"module:attribute"` path (imported on first use) or an object."""
    _LOADED.pop(name, None)
    if isinstance(target, str):
        _REGISTRY[name] = target
    else:
        _REGISTRY[name] = f"<object {type(target).__name__}>"
        _LOADED[name] = target


def get_runtime(name: str) -> Runtime:
    """The runtime called `name`; `TaskFailed("unknown_runtime")` if there is none."""
    if name in _LOADED:
        return _LOADED[name]
    target = _REGISTRY.get(name)
    if target is None:
        raise TaskFailed(
            "unknown_runtime", f"this worker has no runtime {name!r} (known: {', '.join(sorted(_REGISTRY))})"
        )
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TaskFailed(
            "unknown_runtime", f"runtime {name!r} is not available on this worker: {exc}"
        ) from exc
    runtime: Runtime = obj() if isinstance(obj, type) else obj
    _LOADED[name] = runtime
    return runtime
