"""The Slack Web API client, and which of its errors are worth retrying.

Rate limits (HTTP 429 with Retry-After) and dropped connections are retried inside the
client by slack_sdk's retry handlers. What still fails surfaces as `SlackApiError`; the
callers ask `fatal(err)` whether trying again later can help (a revoked token or a channel
the bot left will not come back by itself).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("integrations.slack")

# Errors that will not go away by waiting: the relay marks the binding failed.
FATAL = frozenset(
    {
        "account_inactive",
        "channel_not_found",
        "invalid_auth",
        "is_archived",
        "missing_scope",
        "not_authed",
        "not_in_channel",
        "token_expired",
        "token_revoked",
        "team_access_not_granted",
        "no_permission",
        "ekm_access_denied",
    }
)


def client(token: str, base_url: str, timeout: int = 15) -> AsyncWebClient:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return AsyncWebClient(
        token=token,
        base_url=base,
        timeout=timeout,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def error_code(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        data: Any = getattr(exc.response, "data", None)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
        return f"http_{getattr(exc.response, 'status_code', 'error')}"
    return type(exc).__name__


def fatal(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and error_code(exc) in FATAL
