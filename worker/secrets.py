"""A task's named secrets inside the worker: fetched with the lease, resolved, masked.

The control plane answers `POST /tasks/{id}/secrets` with the stored values of the secrets
the agent lists and, for `env` secrets, the name of the variable of *this* worker's
environment that holds the value. Anything missing fails the task (`missing_secret`) before
its runtime starts, naming what is missing and why.

The values reach the agent's processes only as environment variables (the `command`
runtime, the `bash` tool; worker.process builds the rest of their environment from an
allow-list) and an `llm` agent's provider key where its `provider.api_key_env` names one.
Everything the worker sends for the task (events, result, error, question, checkpoint,
artifacts) goes through `Masker` first: the control plane masks its stored values again at
ingest, but an `env` value it never saw is masked here or nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from kernel.redact import MASK, register
from sdk.secrets import TaskSecretsOut
from worker.runtime import TaskFailed

__all__ = ["MIN_MASKED", "Masker", "fetch"]

# Within one task's own output even a short value is masked; a value of 1-3 characters
# would turn ordinary text into noise, so those are not (set longer secrets).
MIN_MASKED = 4


class Masker:
    """Replaces a task's secret values with `[redacted]` in text, JSON data and bytes."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= MIN_MASKED}, key=len, reverse=True)
        self._raw = [v.encode() for v in self._values]

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def data(self, value: Any) -> Any:
        """A JSON value with every string (keys included) masked; the same object when no
        secret is known (the common case costs nothing)."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            obj = cast("dict[Any, Any]", value)
            return {(self.text(k) if isinstance(k, str) else k): self.data(v) for k, v in obj.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in cast("list[Any] | tuple[Any, ...]", value)]
        return value

    def bytes(self, content: bytes) -> bytes:
        for raw in self._raw:
            if raw in content:
                content = content.replace(raw, MASK.encode())
        return content


async def fetch(
    call: Callable[[], Awaitable[TaskSecretsOut]], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The task's secrets by name: `call()` asks the control plane (with the lease), `env`
    references are read from `environ` (default: this process's environment). Raises
    TaskFailed("missing_secret") naming every secret it cannot have."""
    source = os.environ if environ is None else environ
    answer = await call()
    values = dict(answer.values)
    missing = dict(answer.missing)
    for name, variable in answer.env.items():
        value = source.get(variable)
        if value:
            values[name] = value
        else:
            missing[name] = f"this worker has no environment variable {variable}"
    if missing:
        reasons = "; ".join(f"{name} ({why})" for name, why in sorted(missing.items()))
        raise TaskFailed("missing_secret", f"missing secret(s): {reasons}")
    register(*values.values())  # and the worker's own log lines mask them too
    return values
