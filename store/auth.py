"""Who is calling: the one rule for a caller's credential, shared by the REST API
(`board_api/deps.py`) and `/mcp` (`tools/http.py`), which are siblings and may not import
each other.

- `bearer_token` reads `Authorization: Bearer <token>`;
- `key_principal` looks an API key up by its prefix and proves it by its hash (unknown,
  revoked or mistyped keys are refused, see `store/keys.py`);
- `stream_principal` does the same for the board's short-lived stream tokens, which expire;
- `Gate` adds what the REST app also accepts: open mode (no key exists yet, on a server
  allowed to run open, cached briefly by `KeyCache`) and `serve`'s embedded worker.

What a principal may do is `Principal.can`: admin ⊃ operator ⊃ viewer, worker apart.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass

from kernel import errors
from store import keys
from store.db import Database
from store.models import ApiKey

__all__ = [
    "EMBEDDED_WORKER",
    "OPEN",
    "Gate",
    "KeyCache",
    "Principal",
    "bearer_token",
    "key_principal",
    "stream_principal",
]


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    key_id: str | None = None
    # A worker key bound to queues acts on tasks of those queues only (empty: any).
    queues: frozenset[str] = frozenset()

    def can(self, scope: str) -> bool:
        # admin ⊃ operator ⊃ viewer; worker is separate (plus read access to what it runs).
        if "admin" in self.scopes:
            return True
        if scope == "viewer":
            return bool(self.scopes & {"operator", "viewer", "worker"})
        return scope in self.scopes


OPEN = Principal("anonymous", frozenset({"admin"}))
# `serve`'s own worker, with the credential it minted at start (never stored in the database).
EMBEDDED_WORKER = Principal("embedded-worker", frozenset({"worker"}))


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization` header value; None when it is not a bearer one."""
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _principal(row: ApiKey) -> Principal:
    return Principal(row.name or row.prefix, frozenset(row.scopes), row.id, frozenset(row.queues or ()))


async def key_principal(db: Database, token: str) -> Principal | None:
    """The API key `token` is, if it is a live one; None for unknown, revoked or mistyped."""
    async with db.read() as s:
        row = await keys.verify_key(s, token)
    return None if row is None else _principal(row)


async def stream_principal(db: Database, token: str) -> Principal:
    """The key a live stream token (`mst_...`, from POST /stream-tokens) was made for.

    Such a principal has the key's scopes but no queue binding: streams only read.
    """
    if not token.startswith("mst_"):
        raise errors.Unauthorized(
            "a key does not go in a URL: send it as `Authorization: Bearer <key>`, or put a "
            "stream token from POST /api/v1/stream-tokens in `access_token`",
            code="invalid_stream_token",
        )
    async with db.read() as s:
        row = await keys.verify_stream_token(s, token, time.time())
    if row is None:
        raise errors.Unauthorized(
            "the stream token is expired, revoked or malformed; get a new one from POST /api/v1/stream-tokens",
            code="invalid_stream_token",
        )
    return Principal(row.name or row.prefix, frozenset(row.scopes), row.id)


class KeyCache:
    """Whether any key exists, cached briefly: the open-mode check runs on every request.

    One read at a time: the requests that find the value expired while a read is on its
    way wait for that read instead of each starting one (under load, a dozen reads through
    the ORM every `ttl` seconds). A read started before `invalidate()` is not used after it:
    a key made meanwhile must close an open server at once."""

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl, self._at, self._value = ttl, 0.0, False
        self._reading: asyncio.Future[bool] | None = None
        self._generation = 0

    async def any(self, db: Database) -> bool:
        if time.monotonic() - self._at <= self.ttl:
            return self._value
        reading = self._reading
        if reading is None:
            reading = self._reading = asyncio.ensure_future(self._read(db, self._generation))
        # Shielded: a caller that goes away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, db: Database, generation: int) -> bool:
        try:
            at = time.monotonic()
            async with db.read() as s:
                value = await keys.has_active_keys(s)
            if generation == self._generation:
                self._at, self._value = at, value
            return value
        finally:
            if generation == self._generation:
                self._reading = None

    def invalidate(self) -> None:
        self._at = 0.0
        self._generation += 1
        self._reading = None


class Gate:
    """One server's credential rules: its open mode, its embedded worker, its key cache."""

    def __init__(
        self, *, open_mode: bool, worker_token: str | None = None, cache: KeyCache | None = None
    ) -> None:
        self.open_mode = open_mode
        self.worker_token = worker_token
        self.cache = cache or KeyCache()

    async def is_open(self, db: Database) -> bool:
        """Whether a caller without a credential is let in (as `OPEN`): the server may run
        open (`Settings.open_mode_allowed`) and no key exists yet. In that order: a server
        that may not run open never asks the database."""
        return self.open_mode and not await self.cache.any(db)

    async def bearer(self, db: Database, token: str) -> Principal:
        """The caller a bearer token names, or Unauthorized."""
        embedded = self.worker_token
        if embedded and hmac.compare_digest(token.encode(), embedded.encode()):
            return EMBEDDED_WORKER
        found = await key_principal(db, token)
        if found is None:
            raise errors.Unauthorized(
                "the API key is not valid (unknown, revoked or mistyped)", code="invalid_key"
            )
        return found
