"""Webhooks in, the way back: when a task a hook made ends, its outcome is posted to the
hook's callback URL, from the control plane, after the terminal status has committed.

`HookCallbacks` is a plugin of the REST app (board_api/plugins.py): `install` adds the hook
routes, `running` runs the sender for the app's lifespan. The sender follows the `board`
topic of the hub (every status change, after its commit; other replicas' through
LISTEN/NOTIFY) for the tasks it watches: those with a callback still to send, learnt at
start and from the `hooks` topic that `store.hooks.deliver` publishes. A claim in the
database (`store.hooks.claim_callback`) makes one replica send each callback; a sweep at
start, after a missed notification and every `SWEEP_SECONDS` picks up what was missed
(a restart, a replica that died mid-send).

Each callback runs in its own task (never in a request), tried up to `ATTEMPTS` times with
a doubling delay, through the SSRF guard (`CallbackGuard`): loopback, link-local, metadata
and private addresses are refused unless `META_AGENT_HOOK_CALLBACK_ALLOW` names them. A
refusal is not retried; it is recorded on the delivery (`callback_status = "refused"`, with
the reason; `GET /api/v1/hooks/{name}/deliveries`) and logged.

The request: `POST <callback_url>`, JSON `{hook, delivery_id, task_id, status, result,
error, finished_at}`, signed like a generic-scheme delivery with the hook's secret
(`X-Meta-Agent-Signature: t=...,v1=...`), so the receiver can tell it came from us.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from fastapi import FastAPI

from kernel import errors
from kernel.netguard import IP, Blocked, GuardedTransport, NetGuard
from kernel.redact import redact
from kernel.settings import Settings
from store import hooks
from store.db import Database

__all__ = ["ATTEMPTS", "CallbackGuard", "HookCallbacks"]

log = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_DELAY = 1.0
TIMEOUT = 10.0
SWEEP_SECONDS = 30.0
MAX_IN_FLIGHT = 16
# Not in NetGuard's defaults (agents are meant to reach internal services); a callback URL
# is not: a hook's sender should not learn what answers inside the network.
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
)


class CallbackGuard(NetGuard):
    """NetGuard's defaults plus private networks, with an allow list that opens any of them."""

    def __init__(self, allow: str | None) -> None:
        entries = [e.strip().lower() for e in (allow or "").split(",") if e.strip()]
        super().__init__({"http_allow": entries} if entries else None)
        self.hosts: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for e in entries:
            try:
                self.networks.append(ipaddress.ip_network(e, strict=False))
            except ValueError:
                self.hosts.append(e)
        self.plain = NetGuard()

    def _opened(self, host: str, ip: IP | None = None) -> bool:
        if any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
            return True
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    async def check(self, host: str, port: int | None = None) -> list[IP]:
        host = host.strip("[]").lower().rstrip(".")
        try:
            literal: IP | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if self._opened(host, literal):
            return await super().check(host, port)  # the allow list opens loopback too
        ips = await self.plain.check(host, port)
        for ip in ips:
            if any(ip.version == n.version and ip in n for n in PRIVATE) and not self._opened(host, ip):
                raise Blocked(
                    f"{host} ({ip}) is a private address; callbacks to it are refused unless "
                    "META_AGENT_HOOK_CALLBACK_ALLOW names it"
                )
        return ips


class HookCallbacks:
    """The hook routes and the callback sender (a plugin of the REST app)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:  # checked when the app is built: a typo must not surface as failed callbacks
            self.guard = CallbackGuard(settings.hook_callback_allow)
        except ValueError as exc:
            raise ValueError(f"META_AGENT_HOOK_CALLBACK_ALLOW: {exc}") from None
        self.watched: set[str] = set()
        self.inflight: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    def install(self, app: FastAPI) -> None:
        from board_api.routes.hooks import inbound, router

        app.include_router(router, prefix="/api/v1")
        app.include_router(inbound)

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncGenerator[None]:
        loop = asyncio.create_task(self._follow(db))
        try:
            yield
        finally:
            loop.cancel()
            for t in list(self.inflight):
                t.cancel()
            for t in [loop, *self.inflight]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _follow(self, db: Database) -> None:
        """Watch the tasks that have a callback to send. The board's notifications (every
        change of every task) are followed only while there is such a task: without one,
        a task created or finished costs this loop nothing."""
        with db.hub.subscribe("hooks", internal=True) as new:
            await self._sweep(db, reload=True)
            last_sweep = time.monotonic()
            while True:
                try:
                    if not self.watched:
                        added = await new.get(SWEEP_SECONDS)
                        if added is None or time.monotonic() - last_sweep > SWEEP_SECONDS:
                            last_sweep = time.monotonic()
                            await self._sweep(db, reload=True)
                        else:
                            self.watched.update(added)
                        continue
                    with db.hub.subscribe("board", maxsize=10_000, internal=True) as board:
                        # What finished before the subscription began is in the store.
                        await self._start(db, set(self.watched))
                        while self.watched:
                            added = await new.get(0)
                            if added is None:
                                await self._sweep(db, reload=True)
                            else:
                                self.watched.update(added)
                            changed = await board.get(SWEEP_SECONDS)
                            if changed is None:
                                await self._sweep(db, reload=True)
                            elif ready := self.watched.intersection(changed):
                                await self._start(db, ready)
                            if time.monotonic() - last_sweep > SWEEP_SECONDS:
                                last_sweep = time.monotonic()
                                await self._sweep(db, reload=True)
                except errors.Unavailable:
                    log.warning("hook callbacks: database unavailable")
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("hook callbacks: sweep failed; will retry")
                    await asyncio.sleep(1.0)

    async def _sweep(self, db: Database, *, reload: bool) -> None:
        async with db.read() as s:
            if reload:
                self.watched = set(await hooks.pending_callback_tasks(s))
            due = await hooks.due_callbacks(s) if self.watched else []
        await self._claim(db, due)

    async def _start(self, db: Database, task_ids: set[str]) -> None:
        async with db.read() as s:
            due = await hooks.due_callbacks(s, sorted(task_ids))
        await self._claim(db, due)

    async def _claim(self, db: Database, delivery_ids: list[str]) -> None:
        for delivery_id in delivery_ids:
            async with db.tx() as tx:
                claimed = await hooks.claim_callback(tx, delivery_id)
            if claimed is None:
                continue
            self.watched.discard(claimed.task.id)
            task = asyncio.create_task(self._send(db, claimed))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _send(self, db: Database, cb: hooks.Callback) -> None:
        async with self.slots:
            status, attempts, error = await self._post(cb)
        log.log(
            logging.INFO if status == "sent" else logging.WARNING,
            "hook %s: callback for task %s %s after %d attempt(s)%s",
            cb.hook.name,
            cb.task.id,
            status,
            attempts,
            f": {error}" if error else "",
            extra={"task_id": cb.task.id, "hook": cb.hook.name, "callback_status": status},
        )
        async with db.tx() as tx:
            await hooks.finish_callback(tx, cb.delivery.id, status, attempts, error)

    async def _post(self, cb: hooks.Callback) -> tuple[str, int, str | None]:
        """(status, attempts, error) of posting the task's outcome, retried with backoff."""
        url = cb.hook.callback_url or ""
        body = json.dumps(_outcome(cb), default=str).encode()
        delay, error = FIRST_DELAY, None
        transport = GuardedTransport(self.guard)
        async with httpx.AsyncClient(timeout=TIMEOUT, transport=transport, trust_env=False) as client:
            for attempt in range(1, ATTEMPTS + 1):
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "meta-agent-hooks",
                    "X-Meta-Agent-Delivery": cb.delivery.delivery_id,
                    "X-Meta-Agent-Signature": hooks.sign_generic(cb.hook.secret, body, int(time.time())),
                }
                try:
                    resp = await client.post(url, content=body, headers=headers)
                except Blocked as exc:
                    return "refused", attempt, f"refused: {exc}"
                except httpx.HTTPError as exc:
                    error = redact(f"{type(exc).__name__}: {exc}")
                else:
                    if resp.is_success:
                        return "sent", attempt, None
                    error = f"HTTP {resp.status_code}"
                    if resp.status_code < 500 and resp.status_code not in (408, 429):
                        return "failed", attempt, error  # the receiver said no: asking again won't help
                if attempt < ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
        return "failed", ATTEMPTS, error


def _outcome(cb: hooks.Callback) -> dict[str, Any]:
    t = cb.task
    error = {"code": t.error_code, "message": t.error_message} if t.error_code else None
    return {
        "hook": cb.hook.name,
        "delivery_id": cb.delivery.delivery_id,
        "task_id": t.id,
        "status": t.status,
        "result": t.result,
        "error": error,
        "finished_at": t.finished_at.isoformat() if t.finished_at else None,
    }
