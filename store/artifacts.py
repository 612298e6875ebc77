"""Artifacts' bytes, kept in chunks of at most 1 MiB, so that neither an upload nor a download
holds a whole file in memory.

An upload is staged first: `stage()` writes each chunk in its own short transaction as the
body arrives (a slow uploader must not hold SQLite's one writer for the whole upload),
hashing as it goes. `store.work.save_artifact` then turns the staged chunks into the
artifact in one transaction, fenced by the lease, dropping the chunks of the artifact it
replaces. Staged chunks that never become an artifact (a body cut off or refused, a stale
lease) are discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col

from kernel import errors
from store.db import Database, Tx
from store.ids import new_id
from store.models import Artifact, ArtifactChunk

__all__ = [
    "CHUNK",
    "Staged",
    "check_name",
    "chunks",
    "discard",
    "drop_chunks",
    "forget_orphans",
    "stage",
    "upload",
]

CHUNK = 1 << 20


@dataclass(frozen=True)
class Staged:
    """An upload's chunks, stored under `id` (the artifact's id to be)."""

    id: str
    size: int
    sha256: str


def check_name(name: str) -> None:
    """An artifact name is a relative path of plain names (it may become a file name)."""
    parts = name.split("/")
    if not name or len(name) > 255 or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise errors.Invalid(
            "artifact name must be a relative path of plain names (no '..', no leading '/')",
            code="invalid_artifact_name",
        )


async def stage(db: Database, body: AsyncIterable[bytes], *, limit: int) -> Staged:
    """Store `body` as chunks, in order, as it arrives; TooLarge past `limit` bytes."""
    staged_id, digest, size, idx = new_id(), hashlib.sha256(), 0, 0
    pending = bytearray()
    try:
        async for piece in body:
            size += len(piece)
            if size > limit:
                raise errors.TooLarge(f"the artifact is over the limit of {limit} bytes")
            digest.update(piece)
            pending += piece
            while len(pending) >= CHUNK:
                await _write(db, staged_id, idx, bytes(pending[:CHUNK]))
                del pending[:CHUNK]
                idx += 1
        if pending:
            await _write(db, staged_id, idx, bytes(pending))
    except BaseException:
        await _discard_quietly(db, staged_id)
        raise
    return Staged(staged_id, size, digest.hexdigest())


@contextlib.asynccontextmanager
async def upload(db: Database, body: AsyncIterable[bytes], *, limit: int) -> AsyncGenerator[Staged]:
    """`stage(body)` for a block that makes it an artifact; if the block fails, the chunks go."""
    staged = await stage(db, body, limit=limit)
    try:
        yield staged
    except BaseException:
        await _discard_quietly(db, staged.id)
        raise


async def _discard_quietly(db: Database, staged_id: str) -> None:
    # Shielded, so a cancelled request still cleans up; quiet, so the upload's own error
    # (a stale lease, a body cut off) is the one reported.
    with contextlib.suppress(Exception):
        await asyncio.shield(discard(db, staged_id))


async def _write(db: Database, artifact_id: str, idx: int, data: bytes) -> None:
    async with db.tx() as tx:
        tx.session.add(ArtifactChunk(artifact_id=artifact_id, idx=idx, data=data))


async def discard(db: Database, staged_id: str) -> None:
    """Drop the chunks of an upload that did not become an artifact."""
    async with db.tx() as tx:
        await drop_chunks(tx, staged_id)


async def drop_chunks(tx: Tx, artifact_id: str) -> None:
    await tx.execute(sa.delete(ArtifactChunk).where(col(ArtifactChunk.artifact_id) == artifact_id))


async def forget_orphans(tx: Tx, older_than_seconds: float = 86400, now: float | None = None) -> None:
    """Drop staged chunks that never became an artifact and never will: their upload was cut
    off by the server itself stopping. Ids are UUIDv7, so an id gives its upload's start."""
    started = int(((now if now is not None else time.time()) - older_than_seconds) * 1000)
    cutoff = str(uuid.UUID(int=(started & 0xFFFF_FFFF_FFFF) << 80))
    await tx.execute(
        sa.delete(ArtifactChunk).where(
            col(ArtifactChunk.artifact_id) < cutoff,
            col(ArtifactChunk.artifact_id).not_in(sa.select(col(Artifact.id))),
        )
    )


async def chunks(db: Database, artifact_id: str) -> AsyncIterator[bytes]:
    """The artifact's bytes, a chunk at a time, each read in its own short read."""
    after = -1
    while True:
        async with db.read() as s:
            row = (
                await s.execute(
                    sa.select(col(ArtifactChunk.idx), col(ArtifactChunk.data))
                    .where(col(ArtifactChunk.artifact_id) == artifact_id, col(ArtifactChunk.idx) > after)
                    .order_by(col(ArtifactChunk.idx))
                    .limit(1)
                )
            ).first()
        if row is None:
            return
        after = row[0]
        yield row[1]
