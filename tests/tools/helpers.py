"""Small helpers for MCP tests: calling a tool, collecting progress, bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from mcp import Client
from mcp.types import CallToolResult


class Progress:
    """A progress callback that records (seq, message); may react to a given message."""

    def __init__(self, on_message: dict[str, Callable[[], Any]] | None = None) -> None:
        self.seen: list[tuple[float, str | None]] = []
        self.on_message = on_message or {}

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, message))
        action = self.on_message.get(message or "")
        if action is not None:
            action()

    @property
    def seqs(self) -> list[int]:
        return [int(p) for p, _ in self.seen]

    @property
    def messages(self) -> list[str | None]:
        return [m for _, m in self.seen]


async def call(c: Client, tool: str, progress: Progress | None = None, **args: Any) -> CallToolResult:
    return await c.call_tool(tool, args, progress_callback=progress)


async def ok(c: Client, tool: str, progress: Progress | None = None, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await call(c, tool, progress, **args)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def error(c: Client, tool: str, **args: Any) -> str:
    """Call a tool that must fail with an error result (not a protocol error); its text."""
    result = await call(c, tool, **args)
    assert result.is_error, result.structured_content
    return " ".join(getattr(block, "text", "") for block in result.content)


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll an async `check` until it returns something truthy, failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def live_workers(url: str, n: int, api_key: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url + "/api/v1", headers=headers) as api:

        async def enough() -> bool:
            return len((await api.get("/workers")).json()["items"]) >= n

        await until(enough, 15, f"{n} live worker(s)")
