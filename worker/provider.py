"""The model call behind the `llm` runtime: `kernel.llm`, with its failures as `TaskFailed`.

The streaming, retry and error-mapping code lives in `kernel/llm.py`, shared with the
meta agent; here a failure the task cannot recover from becomes the task's failure code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernel import llm
from kernel.llm import (
    DeltaCoalescer,
    ModelCallFailed,
    ModelReply,
    ProviderConfig,
    load_litellm,
    tool_arguments,
)
from worker.runtime import TaskFailed

__all__ = ["DeltaCoalescer", "ModelReply", "ProviderConfig", "complete", "load_litellm", "tool_arguments"]


async def complete(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    on_delta: Callable[[str], None],
    on_log: Callable[[str], None],
    on_reset: Callable[[str], None] | None = None,
) -> ModelReply:
    """One model turn (see `kernel.llm.complete`); unrecoverable failures fail the task.
    A reply cut by max_tokens comes back (`finish_reason` "length"): its usage counts."""
    try:
        return await llm.complete(
            config, messages, tools, on_delta=on_delta, on_log=on_log, on_reset=on_reset, truncated_ok=True
        )
    except TaskFailed:
        raise
    except ModelCallFailed as exc:
        raise TaskFailed(exc.code, exc.message) from exc
