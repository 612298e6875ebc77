"""The meta agent's reply, streamed into a thread as one message that grows.

The first piece posts the message; later pieces update it, at most once per `interval`
seconds (chat.update is rate limited: about one call per second per channel), and `close`
writes the final text. Works in every kind of thread (channel, DM, assistant), unlike
Slack's chat streaming API, which needs an assistant thread's recipient.
"""

from __future__ import annotations

import asyncio
import logging
import time

from integrations.slack.web import SlackApi

log = logging.getLogger("integrations.slack")
MAX_CHARS = 3900  # chat.update's text is cut at 4000; longer replies continue in a new message


class ReplyStream:
    def __init__(self, client: SlackApi, channel: str, thread_ts: str, interval: float = 1.0) -> None:
        self.client, self.channel, self.thread_ts, self.interval = client, channel, thread_ts, interval
        self.text = ""  # everything received
        self._base = 0  # where the current message's text starts in `text`
        self._shown = ""  # what the current message shows
        self.ts: str | None = None
        self._last = 0.0
        self._lock = asyncio.Lock()
        self._later: asyncio.Task[None] | None = None

    def add(self, piece: str) -> None:
        self.text += piece
        if self._later is None or self._later.done():
            self._later = asyncio.create_task(self._flush_later())

    def reset(self) -> None:
        """The model call is retried: drop the current message's text (the next flush shows it)."""
        self.text = self.text[: self._base]
        if self._later is None or self._later.done():
            self._later = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - self._last)))
        try:
            await self.flush()
        except Exception as exc:  # the final flush in `close` tries again and reports
            log.warning("slack: reply update failed: %s", exc)

    async def flush(self) -> None:
        async with self._lock:
            current = self.text[self._base :]
            if len(current) > MAX_CHARS:  # this message is full: finish it, go on in a new one
                cut = current.rfind("\n", 0, MAX_CHARS)
                cut = cut if cut > MAX_CHARS // 2 else MAX_CHARS
                await self._show(current[:cut])
                self._base += cut
                self.ts, self._shown = None, ""
                current = self.text[self._base :]
            if current.strip() and current != self._shown:
                await self._show(current)

    async def _show(self, text: str) -> None:
        if self.ts is None:
            resp = await self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=text, unfurl_links=False
            )
            self.ts = str(resp["ts"])
        else:
            await self.client.chat_update(channel=self.channel, ts=self.ts, text=text)
        self._shown = text
        self._last = time.monotonic()

    async def close(self) -> None:
        """Write the final text (waiting out the interval since the last update)."""
        if self._later is not None:
            # Awaited, not cancelled: cut off mid-post, a message would be posted without
            # its ts being known, and posted again below.
            await self._later
        wait = self.interval - (time.monotonic() - self._last)
        if self.ts is not None and wait > 0 and self.text[self._base :] != self._shown:
            await asyncio.sleep(wait)
        await self.flush()
