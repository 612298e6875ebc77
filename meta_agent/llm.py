"""One model call through litellm, streamed, retried, errors given codes.

Shared by the worker's `llm` runtime and the meta agent (`meta_agent.agent`).

litellm is imported on the first call only (it takes ~3 s), with the bundled cost map so that
the import does no network fetch. One `complete()` is one model turn:

    deltas   -> on_delta(text), coalesced to a call every ~75 ms or 160 characters (~30-40 tokens)
    429, 5xx, connection errors -> retried with exponential backoff, each retry on_log(...)
    401 -> ModelCallFailed("provider_auth_failed")    404 / unknown model -> "model_not_found"
    context window exceeded -> "context_overflow"   other refusals -> "provider_error"
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DeltaCoalescer",
    "ModelCallFailed",
    "ModelReply",
    "ProviderConfig",
    "close_clients",
    "complete",
    "load_litellm",
    "tool_arguments",
]

_litellm: Any = None


class ModelCallFailed(Exception):
    """A model call that retrying cannot fix, with a stable `code` (e.g. `model_not_found`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def load_litellm() -> Any:
    """Import litellm once, quietly and without a network fetch at import."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


async def close_clients() -> None:
    """Close litellm's cached HTTP clients (if it was ever loaded) before the loop ends."""
    if _litellm is not None:
        await _litellm.close_litellm_async_clients()


@dataclass
class ProviderConfig:
    """Where and how to call the model. `api_base`/`api_key` None = litellm's own variables."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    retries: int = 4
    backoff: float = 0.5
    backoff_cap: float = 8.0
    timeout: float = 600.0


@dataclass
class ModelReply:
    """One assistant turn: its text, its tool calls and what it cost."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {id, name, arguments (str)}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def message(self) -> dict[str, Any]:
        """The turn as an OpenAI-format conversation message."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in self.tool_calls
            ]
        return msg


class DeltaCoalescer:
    """Collects text deltas and hands them on in pieces: after `interval` or `size` characters."""

    def __init__(self, emit: Callable[[str], None], interval: float = 0.075, size: int = 160) -> None:
        self._emit = emit
        self._interval = interval
        self._size = size
        self._buf: list[str] = []
        self._chars = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._buf.append(text)
        self._chars += len(text)
        if self._chars >= self._size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf:
            text, self._buf, self._chars = "".join(self._buf), [], 0
            self._emit(text)


async def complete(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    on_delta: Callable[[str], None],
    on_log: Callable[[str], None],
) -> ModelReply:
    """One model turn, streamed; retried on rate limits and server errors."""
    # The first import takes 3-10 s of CPU: in a thread, so that the control plane's event
    # loop (streams, heartbeats, every other request) does not stop for it.
    litellm = _litellm if _litellm is not None else await asyncio.to_thread(load_litellm)
    delay = config.backoff
    for attempt in range(config.retries + 1):
        try:
            return await _stream_once(litellm, config, messages, tools, on_delta)
        except ModelCallFailed:
            raise
        except Exception as exc:
            failure = _classify(litellm, exc)
            if failure is not None:
                raise failure from exc
            if attempt >= config.retries:
                raise ModelCallFailed(
                    "provider_unavailable",
                    f"the model provider kept failing ({_short(exc)}); gave up after {attempt + 1} attempts",
                ) from exc
            on_log(
                f"model call failed ({_short(exc)}); retry {attempt + 1} of {config.retries} in {delay:.1f} s"
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.backoff_cap)
    raise AssertionError("unreachable")


async def _stream_once(
    litellm: Any,
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    on_delta: Callable[[str], None],
) -> ModelReply:
    kw: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_retries": 0,  # our loop retries, visibly; the SDK's own retries would be silent
        "timeout": config.timeout,
    }
    if tools:
        kw["tools"] = tools
    if config.api_base:
        kw["api_base"] = config.api_base
    if config.api_key:
        kw["api_key"] = config.api_key
    coalescer = DeltaCoalescer(on_delta)
    chunks = []
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Any = None
    try:
        stream = await litellm.acompletion(**kw)
        async for chunk in stream:
            chunks.append(chunk)
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                content.append(delta.content)
                coalescer.add(delta.content)
            for tc in delta.tool_calls or ():
                slot = calls.setdefault(tc.index or 0, {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] = tc.function.name or slot["name"]
                    slot["arguments"] += tc.function.arguments or ""
    finally:
        coalescer.flush()
    reply = ModelReply(
        content="".join(content),
        tool_calls=[
            {"id": c["id"] or f"call_{i}", "name": c["name"], "arguments": c["arguments"] or "{}"}
            for i, c in sorted(calls.items())
        ],
    )
    if usage is not None:
        reply.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        reply.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    reply.cost = _cost(litellm, config.model, chunks, messages)
    return reply


def _cost(litellm: Any, model: str, chunks: list[Any], messages: list[dict[str, Any]]) -> float:
    try:
        built = litellm.stream_chunk_builder(chunks, messages=messages)
        return float(litellm.completion_cost(completion_response=built, model=model) or 0.0)
    except Exception:  # a model without a price in litellm's map (self-hosted, fakes): no cost
        return 0.0


def _classify(litellm: Any, exc: Exception) -> ModelCallFailed | None:
    """The ModelCallFailed for an error that retrying cannot fix; None for a retryable one."""
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ModelCallFailed(
            "context_overflow", f"the conversation no longer fits the model's context: {_short(exc)}"
        )
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return ModelCallFailed(
            "provider_auth_failed",
            f"the model provider refused the credentials: {_short(exc)} (set META_AGENT_LLM_API_KEY or the "
            "provider's own variable, e.g. OPENAI_API_KEY)",
        )
    if isinstance(exc, litellm.NotFoundError):
        return ModelCallFailed("model_not_found", f"the provider does not know the model: {_short(exc)}")
    if isinstance(
        exc, litellm.RateLimitError | litellm.InternalServerError | litellm.ServiceUnavailableError
    ):
        return None
    if isinstance(exc, litellm.APIConnectionError | litellm.Timeout | asyncio.TimeoutError):
        return None
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return None
    text = str(exc)
    if "LLM Provider NOT provided" in text or "model_not_found" in text:
        return ModelCallFailed("model_not_found", f"litellm cannot route the model: {_short(exc)}")
    return ModelCallFailed("provider_error", f"the model call failed: {_short(exc)}")


def _short(exc: BaseException, limit: int = 300) -> str:
    from meta_agent.redact import redact

    # Providers quote the key they refused ("Incorrect API key provided: sk-..."); the
    # message goes to the board, chat and logs.
    text = redact(f"{type(exc).__name__}: {exc}".replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_arguments(raw: str) -> dict[str, Any]:
    """The arguments of a tool call as a dict (invalid JSON raises ValueError)."""
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("tool arguments must be a JSON object")
    return value
