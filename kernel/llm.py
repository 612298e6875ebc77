"""One model call through litellm, streamed, retried, errors given codes.

Shared by the worker's `llm` runtime and the meta agent (`meta_agent.agent`).

litellm is imported on the first call only (it takes ~3 s), with the bundled cost map so that
the import does no network fetch. One `complete()` is one model turn:

    deltas   -> on_delta(text), coalesced to a call every ~75 ms or 160 characters (~30-40 tokens)
    429, 5xx, connection errors -> retried with exponential backoff, each retry on_log(...)
    a stream that breaks after the 200 (no chunks, an error frame, no finish_reason) -> retried
        too (on_reset() first when deltas of it went out), then "empty_response" /
        "provider_error": never an empty answer
    401 -> ModelCallFailed("provider_auth_failed")    404 / unknown model -> "model_not_found"
    context window exceeded (an error status or an error frame) -> "context_overflow"
    finish_reason "length" -> "max_tokens" (unless the caller takes cut answers)
    other refusals -> "provider_error"
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from kernel.deltas import DeltaCoalescer
from kernel.llm_errors import BrokenStream, ModelCallFailed, classify, overflow, short

__all__ = [
    "DeltaCoalescer",
    "ModelCallFailed",
    "ModelReply",
    "ProviderConfig",
    "close_clients",
    "complete",
    "cut_message",
    "load_litellm",
    "tool_arguments",
]

_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm once, quietly and without a network fetch at import."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        # litellm's loggers have their own stderr handler AND propagate to the root: every
        # line came out twice, the second time unredacted. Ours (kernel.logs) is enough.
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).handlers.clear()
        _litellm = litellm
    return _litellm


async def close_clients() -> None:
    """Close litellm's cached HTTP clients (if it was ever loaded) before the loop ends."""
    if _litellm is not None:
        await _litellm.close_litellm_async_clients()


TOOL_CHOICES = ("auto", "required", "none", "omit")
DEFAULT_MAX_TOKENS = 4096


@dataclass
class ProviderConfig:
    """Where and how to call the model. `api_base`/`api_key` None = litellm's own variables.

    `tool_choice` (when tools are offered): "auto", "required", "none", a tool's name (that
    tool is forced) or "omit" (not sent: the server's default). `first_tool_choice`, when
    set, replaces it for the model's first answer to a person's message (the last message
    is the user's), so a forced tool does not force every later turn too. Prices per token,
    when given, replace litellm's; without them a custom `api_base` costs 0 (see `_cost`).
    """

    model: str
    api_base: str | None = None
    api_key: str | None = None
    retries: int = 4
    backoff: float = 0.5
    backoff_cap: float = 8.0
    timeout: float = 600.0
    tool_choice: str = "auto"
    first_tool_choice: str | None = None
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    temperature: float | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None


@dataclass
class ModelReply:
    """One assistant turn: its text, its tool calls and what it cost."""

    content: str
    tool_calls: list[dict[str, Any]] = field(
        default_factory=list[dict[str, Any]]
    )  # {id, name, arguments (str)}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    finish_reason: str = "stop"

    def message(self) -> dict[str, Any]:
        """The turn as an OpenAI-format conversation message."""
        # Always a string: chat templates (llama.cpp's) read `content` on every message.
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
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


async def complete(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    on_delta: Callable[[str], None],
    on_log: Callable[[str], None],
    on_reset: Callable[[str], None] | None = None,
    truncated_ok: bool = False,
) -> ModelReply:
    """One model turn, streamed; retried on rate limits, server errors and broken streams.

    `on_reset(reason)` is called before a retry when the failed attempt's text already went
    out through `on_delta`: the streamed text so far is void. A reply cut by `max_tokens`
    raises `max_tokens` unless `truncated_ok` (then its `finish_reason` is "length").
    """
    # The first import takes 3-10 s of CPU: in a thread, so that the control plane's event
    # loop (streams, heartbeats, every other request) does not stop for it.
    litellm = _litellm if _litellm is not None else await asyncio.to_thread(load_litellm)
    kw = _request(config, messages, tools)
    delay = config.backoff
    whole = False
    reply: ModelReply | None = None
    for attempt in range(config.retries + 1):
        streamed = False

        def delta(text: str) -> None:
            nonlocal streamed
            streamed = True
            on_delta(text)

        try:
            once = _whole_once if whole else _stream_once
            reply = await once(litellm, config, kw, delta)
            break
        except ModelCallFailed:
            raise
        except Exception as exc:
            failure = classify(litellm, exc)
            if failure is not None:
                raise failure from exc
            if attempt >= config.retries:
                raise _gave_up(exc, attempt + 1) from exc
            why = f"model call failed ({short(exc)})"
            if streamed and on_reset is not None:
                on_reset(why)
            # llama.cpp's server reports a failure inside a streamed answer (a prompt over
            # the context, a template error) by cutting it before the first chunk; the same
            # request not streamed gets the error with its words (a 400 we can classify).
            whole = isinstance(exc, BrokenStream) and exc.silent
            on_log(f"{why}; retry {attempt + 1} of {config.retries} in {delay:.1f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.backoff_cap)
    assert reply is not None  # the last attempt either replied (break) or raised
    if reply.finish_reason == "length" and not truncated_ok:
        raise ModelCallFailed("max_tokens", cut_message(config))
    return reply


def cut_message(config: ProviderConfig) -> str:
    """Why a reply cut by `max_tokens` failed (the task's or the chat's error)."""
    return (
        f"the model's answer was cut at max_tokens={config.max_tokens}: raise `max_tokens` in the "
        "provider settings, or ask for a shorter answer"
    )


def _gave_up(exc: Exception, attempts: int) -> ModelCallFailed:
    if isinstance(exc, BrokenStream):
        return ModelCallFailed(exc.code, f"{exc}; gave up after {attempts} attempts")
    return ModelCallFailed(
        "provider_unavailable",
        f"the model provider kept failing ({short(exc)}); gave up after {attempts} attempts",
    )


def _request(
    config: ProviderConfig, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """The keyword arguments of litellm.acompletion for this turn."""
    kw: dict[str, Any] = {
        "model": config.model,
        # Every assistant message carries a string `content` (older checkpoints and
        # conversations hold None): chat templates such as llama.cpp's fail without one.
        "messages": [
            {**m, "content": m.get("content") or ""} if m.get("role") == "assistant" else m for m in messages
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_retries": 0,  # our loop retries, visibly; the SDK's own retries would be silent
        "timeout": config.timeout,
    }
    if tools:
        kw["tools"] = tools
        first = messages and messages[-1].get("role") == "user"
        choice = (config.first_tool_choice if first else None) or config.tool_choice
        if choice != "omit":
            kw["tool_choice"] = _tool_choice(choice, tools)
    if config.max_tokens is not None:
        kw["max_tokens"] = config.max_tokens
    if config.temperature is not None:
        kw["temperature"] = config.temperature
    if config.api_base:
        kw["api_base"] = config.api_base
    if config.api_key:
        kw["api_key"] = config.api_key
    return kw


def _tool_choice(choice: str, tools: list[dict[str, Any]]) -> str | dict[str, Any]:
    if choice in TOOL_CHOICES:
        return choice
    names = [t.get("function", {}).get("name") for t in tools]
    if choice not in names:
        raise ModelCallFailed(
            "invalid_tool_choice",
            f"tool_choice forces the tool {choice!r}, which is not offered (tools: {', '.join(map(str, names))})",
        )
    return {"type": "function", "function": {"name": choice}}


async def _stream_once(
    litellm: Any, config: ProviderConfig, kw: dict[str, Any], on_delta: Callable[[str], None]
) -> ModelReply:
    coalescer = DeltaCoalescer(on_delta)
    chunks: list[Any] = []  # litellm's chunk objects (untyped), for its cost reckoning
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Any = None
    finish: str | None = None
    stream = await litellm.acompletion(**kw)
    try:
        async for chunk in stream:
            chunks.append(chunk)
            usage = getattr(chunk, "usage", None) or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = getattr(choice, "finish_reason", None) or finish
            delta = choice.delta
            if delta.content:
                content.append(delta.content)
                coalescer.add(delta.content)
            for tc in delta.tool_calls or ():
                slot = calls.setdefault(tc.index or 0, {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] = tc.function.name or slot["name"]
                    slot["arguments"] += tc.function.arguments or ""
    except Exception as exc:
        if overflow(exc) or classify(litellm, exc) is not None:
            raise
        # After the 200: the server is up but this answer broke (an error frame, a cut).
        message = f"the model's stream broke: {short(exc)}"
        raise BrokenStream("provider_error", message, silent=not content and not calls) from exc
    finally:
        coalescer.flush()
    # litellm closes an empty stream with a made-up `finish_reason: stop` chunk; the server's
    # own answer would have carried text, a tool call or (asked for) its usage.
    if not content and not calls and usage is None:
        raise _empty()
    if finish is None:
        raise BrokenStream("provider_error", "the model's stream ended without a finish_reason")
    reply = ModelReply(
        content="".join(content),
        tool_calls=[
            {"id": c["id"] or f"call_{i}", "name": c["name"], "arguments": c["arguments"] or "{}"}
            for i, c in sorted(calls.items())
        ],
        finish_reason=finish,
    )
    if usage is not None:
        reply.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        reply.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    reply.cost = _cost(
        litellm, config, reply, lambda: litellm.stream_chunk_builder(chunks, messages=kw["messages"])
    )
    return reply


def _empty() -> BrokenStream:
    return BrokenStream(
        "empty_response",
        "the provider answered 200 and then sent nothing (it failed after the status line: "
        "look at the model server's log)",
        silent=True,
    )


async def _whole_once(
    litellm: Any, config: ProviderConfig, kw: dict[str, Any], on_delta: Callable[[str], None]
) -> ModelReply:
    """The same request, not streamed; its text goes out as one delta."""
    request = {k: v for k, v in kw.items() if k not in ("stream", "stream_options")}
    response = await litellm.acompletion(**request)
    choice = response.choices[0] if response.choices else None
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) or ""
    calls = [
        {"id": c.id or f"call_{i}", "name": c.function.name, "arguments": c.function.arguments or "{}"}
        for i, c in enumerate(getattr(message, "tool_calls", None) or ())
    ]
    if not text and not calls:
        raise _empty()
    if text:
        on_delta(text)
    reply = ModelReply(text, calls, finish_reason=getattr(choice, "finish_reason", None) or "stop")
    usage = getattr(response, "usage", None)
    reply.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    reply.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    reply.cost = _cost(litellm, config, reply, lambda: response)
    return reply


def _cost(litellm: Any, config: ProviderConfig, reply: ModelReply, built: Callable[[], Any]) -> float:
    """Prices given in the settings win. Without them, a custom `api_base` costs 0: litellm
    prices a model NAME as sold by its provider, and `openai/<name>` on a local server is
    not that (it was charged as OpenAI). A paid gateway gets its prices set explicitly."""
    if config.input_cost_per_token is not None or config.output_cost_per_token is not None:
        return reply.prompt_tokens * (config.input_cost_per_token or 0.0) + reply.completion_tokens * (
            config.output_cost_per_token or 0.0
        )
    if config.api_base:
        return 0.0
    try:
        return float(litellm.completion_cost(completion_response=built(), model=config.model) or 0.0)
    except Exception:  # a model without a price in litellm's map (self-hosted, fakes): no cost
        return 0.0


def tool_arguments(raw: str) -> dict[str, Any]:
    """The arguments of a tool call as a dict (invalid JSON raises ValueError)."""
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("tool arguments must be a JSON object")
    return cast(dict[str, Any], value)  # JSON object keys are strings
