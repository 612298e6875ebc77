"""Live streams (SSE): one task's events, and the board's changes.

Both re-read the durable state after every wake-up, so a follower on any replica sees
everything in order, and a reconnect with `Last-Event-ID` resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from board_api import wire
from board_api.deps import DbDep, Viewer
from board_api.feeds import SSE_HEADERS, SSE_RESPONSES, sse
from board_api.limits import LimitedStream
from board_api.routes.tasks import board_snapshot
from board_api.state import app_state
from kernel import errors
from store import fastpath, tasks

router = APIRouter()

PAGE = 500
KEEPALIVE_SECONDS = 15.0


PING = b": ping\n\n"
# A follower re-checks the database at least this often even without a wake-up, bounding
# the damage of a notification lost across replicas.
RECHECK_SECONDS = 5.0


def _resume_point(after: int | None, last_event_id: str | None) -> int:
    if last_event_id:
        try:
            seq = int(last_event_id)
            if not 0 <= seq <= 2**62:
                raise ValueError(seq)
            return seq
        except ValueError as exc:
            raise errors.Invalid("Last-Event-ID must be an event seq", code="invalid_last_event_id") from exc
    return after or 0


@router.get("/tasks/{task_id}/stream", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def stream_task(
    task_id: str,
    request: Request,
    db: DbDep,
    p: Viewer,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Live events of a task; ends with an `end` event once the task has finished."""
    start = _resume_point(after, last_event_id)
    # 404 before the stream starts. On PostgreSQL without an SQLAlchemy session: a client
    # follows its task right after creating it, while the claim of that task runs on this
    # same event loop and waits behind this route's Python (bench.command: ~1 ms of it).
    if db.fast_reads:
        if await fastpath.task_progress(db, task_id) is None:
            raise errors.NotFound(f"task {task_id} not found", code="task_not_found")
    else:
        async with db.read() as s:
            await tasks.get_task(s, task_id)
    state = app_state(request)
    feeds = state.feeds

    async def gen() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        async with feeds.follow(task_id) as feed:
            async for frame in feeds.frames_after(feed, start, KEEPALIVE_SECONDS):
                yield frame

    release = state.limiter.acquire(p)
    return LimitedStream(gen(), release, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/board/stream", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def stream_board(
    request: Request,
    db: DbDep,
    p: Viewer,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> StreamingResponse:
    """A `board` snapshot, then a `task` event per status change; `resync` means refetch."""
    hub = db.hub

    async def cards(ids: list[str]) -> list[bytes]:
        out: list[bytes] = []
        async with db.read() as s:
            for tid in dict.fromkeys(ids):  # de-duplicate, keep order
                try:
                    out.append(sse(wire.task_out(await tasks.get_task(s, tid)).model_dump_json(), "task"))
                except errors.NotFound:
                    continue
        return out

    async def gen() -> AsyncIterator[bytes]:
        # Database reads are shielded and finished before anything is yielded: a client that
        # goes away cancels this generator, and a session held across a `yield` (or a query
        # cut off mid-way) would strand its pooled connection.
        with hub.subscribe("board", maxsize=500) as sub:
            yield b"retry: 1000\n\n"
            snap = await asyncio.shield(board_snapshot(db, limit, {}))
            yield sse(snap.model_dump_json(), "board")
            while True:
                ids = await sub.get(timeout=KEEPALIVE_SECONDS)
                if ids is None:
                    snap = await asyncio.shield(board_snapshot(db, limit, {}))
                    yield sse(snap.model_dump_json(), "board")
                    continue
                if not ids:
                    yield PING
                    continue
                for frame in await asyncio.shield(cards(ids)):
                    yield frame

    release = app_state(request).limiter.acquire(p)
    return LimitedStream(gen(), release, media_type="text/event-stream", headers=SSE_HEADERS)
