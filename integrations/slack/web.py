"""The Slack Web API client, and which of its errors are worth retrying.

Rate limits (HTTP 429 with Retry-After) and dropped connections are retried inside the
client by slack_sdk's retry handlers. What still fails surfaces as `SlackApiError`; the
callers ask `fatal(err)` whether trying again later can help (a revoked token or a channel
the bot left will not come back by itself).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, cast

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


class Response(Protocol):
    """A Web API response (`AsyncSlackResponse`): its JSON fields by name."""

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


Blocks = Sequence[dict[str, Any]]


class SlackApi(Protocol):
    """The Web API calls this integration makes, typed. slack_sdk declares its methods with
    untyped `**kwargs`, which pyright strict reports as partially unknown at every call; the
    client is seen through this protocol instead (`api(client)`)."""

    async def chat_postMessage(
        self,
        *,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        blocks: Blocks | None = None,
        metadata: dict[str, Any] | None = None,
        unfurl_links: bool | None = None,
    ) -> Response: ...

    async def chat_update(
        self, *, channel: str, ts: str, text: str, blocks: Blocks | None = None
    ) -> Response: ...

    async def chat_postEphemeral(
        self, *, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> Response: ...

    async def reactions_add(self, *, channel: str, timestamp: str, name: str) -> Response: ...

    async def reactions_remove(self, *, channel: str, timestamp: str, name: str) -> Response: ...

    async def assistant_threads_setStatus(
        self, *, channel_id: str, thread_ts: str, status: str
    ) -> Response: ...

    async def assistant_threads_setSuggestedPrompts(
        self, *, channel_id: str, thread_ts: str, prompts: list[dict[str, str]]
    ) -> Response: ...

    async def conversations_replies(
        self, *, channel: str, ts: str, include_all_metadata: bool, limit: int, cursor: str | None
    ) -> Response: ...

    async def conversations_history(
        self,
        *,
        channel: str,
        oldest: str,
        include_all_metadata: bool,
        limit: int,
        cursor: str | None,
    ) -> Response: ...

    async def conversations_list(
        self, *, types: str, exclude_archived: bool, limit: int, cursor: str | None
    ) -> Response: ...

    async def auth_test(self) -> Response: ...

    async def files_upload_v2(
        self, *, channel: str, thread_ts: str, content: bytes, filename: str, title: str
    ) -> Response: ...


def api(client: AsyncWebClient) -> SlackApi:
    """`client` as the typed `SlackApi` (the same object; see `SlackApi` for why a cast)."""
    return cast(SlackApi, client)


def client(token: str | None, base_url: str, timeout: int = 15) -> AsyncWebClient:
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
        # slack_sdk leaves `SlackApiError.response` untyped: read it as a plain object.
        response: object = getattr(exc, "response", None)
        data: object = getattr(response, "data", None)
        if isinstance(data, dict):
            error: object = cast(dict[str, object], data).get("error")
            if error:
                return str(error)
        return f"http_{getattr(response, 'status_code', 'error')}"
    return type(exc).__name__


def fatal(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and error_code(exc) in FATAL
