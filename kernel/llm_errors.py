"""How a failed model call is named: retried, or a `ModelCallFailed` with a stable code."""

from __future__ import annotations

import asyncio
import re
from typing import Any

__all__ = ["BrokenStream", "ModelCallFailed", "classify", "overflow", "short"]


class ModelCallFailed(Exception):
    """A model call that retrying cannot fix, with a stable `code` (e.g. `model_not_found`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BrokenStream(Exception):
    """The provider answered 200, then the stream failed: retried, then `code`. `silent`:
    not a word of the answer arrived (the retry then asks for a whole answer)."""

    def __init__(self, code: str, message: str, *, silent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.silent = silent


_OVERFLOW = re.compile(
    r"context.{0,20}(window|length)|maximum context|exceeds? (the )?context|too many tokens", re.I
)


def overflow(exc: Exception) -> bool:
    return bool(_OVERFLOW.search(str(exc)))


def classify(litellm: Any, exc: Exception) -> ModelCallFailed | None:
    """The ModelCallFailed for an error that retrying cannot fix; None for a retryable one."""
    if isinstance(exc, BrokenStream):
        return None
    # litellm maps OpenAI's wording only; llama.cpp says "Requested tokens (N) exceed
    # context window of M", often in an error frame after the 200.
    if isinstance(exc, litellm.ContextWindowExceededError) or overflow(exc):
        return ModelCallFailed(
            "context_overflow", f"the conversation no longer fits the model's context: {short(exc)}"
        )
    # The openai client refuses to send without a key; litellm raises it as a server error.
    missing = "Missing credentials" in str(exc) or "api_key client option must be set" in str(exc)
    if missing or isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return ModelCallFailed(
            "provider_auth_failed",
            f"the model provider refused the credentials: {short(exc)} (set META_AGENT_LLM_API_KEY or the "
            "provider's own variable, e.g. OPENAI_API_KEY)",
        )
    if isinstance(exc, litellm.NotFoundError):
        return ModelCallFailed("model_not_found", f"the provider does not know the model: {short(exc)}")
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
        return ModelCallFailed("model_not_found", f"litellm cannot route the model: {short(exc)}")
    return ModelCallFailed("provider_error", f"the model call failed: {short(exc)}")


def short(exc: BaseException, limit: int = 300) -> str:
    from kernel.redact import redact

    # Providers quote the key they refused ("Incorrect API key provided: sk-..."); the
    # message goes to the board, chat and logs.
    text = redact(f"{type(exc).__name__}: {exc}".replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"
