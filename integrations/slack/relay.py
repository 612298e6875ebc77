"""The relay: each Slack-bound task's events, posted to its thread, exactly once.

Per binding, a follower reads the task's event log after `last_seq` (the log is the source of
truth; the hub only wakes it up) and turns it into Slack calls:

- one progress message, posted once and then updated in place (`chat.update`, idempotent),
  at most every `interval` seconds, and every `TICK` seconds while the task runs (elapsed time);
- `input_requested`: the question, with buttons for its choices; `input_received`: that
  message updated to say who answered what;
- the end: the progress message's final state, the result (summary, board link, Retry on
  failure) and the task's small artifacts as files.

A scheduled run (a schedule's `notify: slack:#ops`) is bound to a channel with no thread yet
(`store.slack.bind_channel`): its follower first posts the root message, "Scheduled run of
<schedule> started", and then relays into that message's thread like any other. The root
post is made once the same way as the others, found after a crash in the channel's history.

Exactly once across restarts: a post that creates a message is recorded in `posts` *before*
it is made (`{"pending": true}`) and again with its `ts` after. Finding a pending one on a
start means "posted, or crashed just before": the thread is searched for the message by its
metadata (every post carries the task id and post key), and only if absent is it posted.
`last_seq` moves after the event's posts are recorded, in a write fenced by the lease.

One replica follows a binding: a lease (owner, until) taken with a conditional UPDATE and
renewed while following; released on a clean stop so a restart resumes at once.
Slack errors never escape: rate limits are retried in the client; a fatal error (revoked
token, channel gone) marks the binding failed; anything else backs off and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from datetime import timedelta
from typing import Any

from integrations.slack import render
from integrations.slack.web import SlackApi, error_code, fatal
from store import artifacts as artifact_store
from store import events as event_log
from store import slack as slack_store
from store import tasks as task_service
from store.db import Database
from store.models import Task
from store.slack import ThreadRef
from store.slack_models import SlackBinding

log = logging.getLogger("integrations.slack.relay")

LEASE_SECONDS = 30.0
TICK = 15.0  # refresh the elapsed time of a running task this often
SWEEP = 5.0  # look for bindings nobody follows (another replica died) this often
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 5
METADATA_TYPE = "meta_agent_post"


class LeaseLost(Exception):
    """Another replica took the binding over; this follower stops."""


class Relay:
    def __init__(self, db: Database, client: SlackApi, board_base: str, *, interval: float = 1.0) -> None:
        self.db, self.client, self.board_base = db, client, board_base.rstrip("/")
        self.interval = interval
        self.owner = f"{socket.gethostname()[:30]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.followers: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._team: str | None = None
        self._channels: dict[str, str] = {}  # channel name -> id, as Slack told us

    async def team_id(self) -> str:
        """The workspace's id (a thread's key names it), asked once."""
        if self._team is None:
            self._team = str((await self.client.auth_test())["team_id"])
        return self._team

    async def channel_id(self, name: str) -> str | None:
        """The id of channel `#name` (conversations.list), or None when there is none."""
        name = name.removeprefix("#")
        if name in self._channels:
            return self._channels[name]
        cursor = None
        for _ in range(50):
            resp = await self.client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
            )
            channels: list[dict[str, Any]] = resp.get("channels") or []
            for c in channels:
                self._channels[str(c.get("name"))] = str(c.get("id"))
            if name in self._channels:
                return self._channels[name]
            paging: dict[str, Any] = resp.get("response_metadata") or {}
            cursor = paging.get("next_cursor")
            if not cursor:
                break
        return None

    def board_url(self, task_id: str) -> str:
        return f"{self.board_base}/#/tasks/{task_id}"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self, grace: float = 5.0) -> None:
        """Let every follower finish the step it is in (a post and its record belong
        together), release the leases, and cancel whatever is still going after `grace`."""
        self._stopping.set()
        running = [t for t in [self._sweeper, *self.followers.values()] if t is not None]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for t in late:
                t.cancel()
            for t in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    def wake(self, task_id: str) -> None:
        """A binding was just made here: follow it now rather than at the next sweep."""
        if self._stopping.is_set():
            return
        current = self.followers.get(task_id)
        if current is None or current.done():
            self.followers[task_id] = asyncio.create_task(self._follow(task_id))

    async def _sweep(self) -> None:
        """Follow the bindings nobody follows: every SWEEP seconds (a replica died), and at
        once when one is made elsewhere (a schedule's run, bound by whichever replica's
        ticker fired it: the `slack_bindings` notification)."""
        last_prune = 0.0
        while not self._stopping.is_set():
            version = self.db.hub.version(slack_store.BINDINGS)
            try:
                async with self.db.read() as s:
                    claimable = await slack_store.claimable(s, self.owner)
                for task_id in claimable:
                    self.wake(task_id)
                if time.monotonic() - last_prune > 3600:
                    last_prune = time.monotonic()
                    async with self.db.tx() as tx:
                        await slack_store.forget_events(tx)
            except Exception:
                log.exception("slack relay: sweep failed; will retry")
            await self._wait(slack_store.BINDINGS, version, SWEEP)

    # --- one binding ------------------------------------------------------------------------

    async def _follow(self, task_id: str) -> None:
        binding = await self._lease(task_id)
        if binding is None:
            return  # another replica has it, or it is finished
        follower = _Follower(self, binding)
        backoff = 1.0
        try:
            while not self._stopping.is_set():
                topic = f"task:{task_id}"
                version = self.db.hub.version(topic)
                try:
                    if await follower.step():
                        return
                    backoff = 1.0
                    timeout = follower.next_wait()
                except LeaseLost:
                    return
                except Exception as exc:
                    if fatal(exc):
                        await follower.give_up(exc)
                        return
                    log.warning(
                        "slack relay: task %s: %s; retrying in %.0fs",
                        task_id,
                        error_code(exc),
                        backoff,
                        exc_info=not _is_slack(exc),
                    )
                    timeout, backoff = backoff, min(backoff * 2, 60.0)
                if time.monotonic() > follower.lease_renew_at:
                    if await self._lease(task_id) is None:
                        return
                    follower.lease_renew_at = time.monotonic() + LEASE_SECONDS / 3
                await self._wait(topic, version, timeout)
        finally:
            if not follower.finished:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release(task_id))

    async def _lease(self, task_id: str) -> SlackBinding | None:
        async with self.db.tx() as tx:
            return await slack_store.lease(tx, task_id, self.owner, LEASE_SECONDS)

    async def _release(self, task_id: str) -> None:
        async with self.db.tx() as tx:
            await slack_store.release(tx, task_id, self.owner)

    async def _wait(self, topic: str, version: int, timeout: float) -> None:
        """Until the task has new events, the timeout passes, or the relay stops."""
        changed = asyncio.ensure_future(self.db.hub.wait(topic, version, timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([changed, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (changed, stopping):
                f.cancel()
            for f in (changed, stopping):
                with contextlib.suppress(asyncio.CancelledError):
                    await f


def _is_slack(exc: BaseException) -> bool:
    from slack_sdk.errors import SlackApiError

    return isinstance(exc, SlackApiError)


class _Follower:
    """The relay's state for one binding (the durable part lives in the row)."""

    def __init__(self, relay: Relay, binding: SlackBinding) -> None:
        self.relay, self.db, self.client = relay, relay.db, relay.client
        self.b = binding
        self.posts: dict[str, Any] = dict(binding.posts or {})
        self.finished = False
        self.dirty = True  # render the progress message once on every (re)start
        self.last_update = 0.0
        self.lease_renew_at = time.monotonic() + LEASE_SECONDS / 3
        self.task: Task | None = None

    @property
    def task_id(self) -> str:
        return self.b.task_id

    async def _save(self, **values: Any) -> None:
        async with self.db.tx() as tx:
            saved = await slack_store.save(tx, self.task_id, self.relay.owner, **values)
        if not saved:
            raise LeaseLost()

    def next_wait(self) -> float:
        if self.dirty:  # an update is due once the interval since the last one has passed
            return max(0.0, self.relay.interval - (time.monotonic() - self.last_update))
        return TICK

    async def step(self) -> bool:
        """Relay what is new; True when the binding is done."""
        if not self.b.thread_ts:
            await self._root()
        async with self.db.read() as s:
            events = await event_log.list_after(s, self.task_id, self.b.last_seq, limit=200)
            self.task = await task_service.get_task(s, self.task_id)
        end = None
        for ev in events:
            data = ev.data or {}
            self.dirty = True
            if ev.kind == "tool_started":
                self.posts["tool"] = data.get("name")
            elif ev.kind == "tool_completed":
                self.posts["tool"] = None
            elif ev.kind == "input_requested":
                await self._progress(force=True)  # "requires input" before the question
                await self._question(ev.seq, data)
            elif ev.kind == "input_received":
                await self._answered(data)
            elif ev.kind == "status" and slack_store.is_terminal(str(data.get("status"))):
                end = ev.seq
                break  # the last event; `last_seq` moves past it only once the end is posted
            if ev.kind in ("input_requested", "input_received"):
                await self._advance(ev.seq)  # what was posted for this event is now recorded
        if end is not None:
            await self._finish(end)
            return True
        if events:
            await self._advance(events[-1].seq)
        if len(events) == 200:
            return False  # more to read at once
        if time.monotonic() - self.last_update >= TICK and self.task.status == "running":
            self.dirty = True
        await self._progress()
        return False

    async def _advance(self, seq: int) -> None:
        if seq > self.b.last_seq:
            await self._save(last_seq=seq, posts=dict(self.posts))
            self.b.last_seq = seq

    # --- the posts --------------------------------------------------------------------------

    def _metadata(self, key: str) -> dict[str, Any]:
        return {"event_type": METADATA_TYPE, "event_payload": {"task_id": self.task_id, "post": key}}

    async def _post_once(self, key: str, text: str, blocks: list[dict[str, Any]]) -> str:
        """Post a message to the thread once, whatever crashes or restarts happen around it."""
        entry: dict[str, Any] = self.posts.get(key) or {}
        if entry.get("ts"):
            return str(entry["ts"])
        ts = await self._find(key) if entry.get("pending") else None
        if ts is None:
            self.posts[key] = {"pending": True}
            await self._save(posts=dict(self.posts))  # the intent, before the post
            resp = await self.client.chat_postMessage(
                channel=self.b.channel,
                thread_ts=self.b.thread_ts,
                text=text,
                blocks=blocks,
                metadata=self._metadata(key),
                unfurl_links=False,
            )
            ts = str(resp["ts"])
        self.posts[key] = {"ts": ts}
        await self._save(posts=dict(self.posts))
        return ts

    async def _root(self) -> None:
        """A channel binding's first post: the root message its thread hangs from. Once, as
        `_post_once` does: the intent is recorded first, and a pending one found on a restart
        is looked for in the channel's history before it is posted again."""
        team = await self.relay.team_id()  # before the post: nothing may fail between it and its record
        notify: dict[str, Any] = self.posts.get("notify") or {}
        to = str(notify.get("to") or self.b.channel)
        entry: dict[str, Any] = self.posts.get("root") or {}
        found = await self._find_root(to) if entry.get("pending") else None
        if found is None:
            self.posts["root"] = {"pending": True}
            await self._save(posts=dict(self.posts))  # the intent, before the post
            async with self.db.read() as s:
                task = await task_service.get_task(s, self.task_id)
            schedule = str(notify.get("schedule") or "")
            text, blocks = render.scheduled(schedule, task, self.relay.board_url(self.task_id))
            resp = await self.client.chat_postMessage(
                channel=to, text=text, blocks=blocks, metadata=self._metadata("root"), unfurl_links=False
            )
            found = str(resp["channel"]), str(resp["ts"])  # Slack answers with the channel's id
        channel, ts = found
        ref = ThreadRef(team, channel, ts)
        self.posts["root"] = {"ts": ts}
        async with self.db.tx() as tx:
            if not await slack_store.rooted(tx, self.task_id, self.relay.owner, ref, dict(self.posts)):
                raise LeaseLost()
        self.b.thread_key, self.b.team_id = ref.key, ref.team_id
        self.b.channel, self.b.thread_ts = channel, ts

    async def _find_root(self, to: str) -> tuple[str, str] | None:
        """(channel id, ts) of the root message posted before a crash cut off its record."""
        channel = await self.relay.channel_id(to) if to.startswith("#") else to
        if channel is None:
            return None  # no such channel (any more): posting again says so
        oldest = (self.b.created_at - timedelta(minutes=1)).timestamp()
        cursor = None
        for _ in range(10):
            resp = await self.client.conversations_history(
                channel=channel, oldest=f"{oldest:.6f}", include_all_metadata=True, limit=200, cursor=cursor
            )
            ts = self._match(resp.get("messages") or [], "root")
            if ts:
                return channel, ts
            paging: dict[str, Any] = resp.get("response_metadata") or {}
            cursor = paging.get("next_cursor")
            if not cursor:
                return None
        return None

    def _match(self, messages: list[dict[str, Any]], key: str) -> str | None:
        for m in messages:
            meta: dict[str, Any] = m.get("metadata") or {}
            payload: dict[str, Any] = meta.get("event_payload") or {}
            if payload.get("task_id") == self.task_id and payload.get("post") == key:
                return str(m["ts"])
        return None

    async def _find(self, key: str) -> str | None:
        """The message posted for `key` before a crash cut off its record, if any."""
        cursor = None
        for _ in range(10):
            resp = await self.client.conversations_replies(
                channel=self.b.channel,
                ts=self.b.thread_ts,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            ts = self._match(resp.get("messages") or [], key)
            if ts:
                return ts
            paging: dict[str, Any] = resp.get("response_metadata") or {}
            cursor = paging.get("next_cursor")
            if not cursor:
                return None
        return None

    async def _progress(self, force: bool = False) -> None:
        if not self.dirty or self.task is None:
            return
        if not force and time.monotonic() - self.last_update < self.relay.interval:
            return  # throttled: next_wait() brings us back when the interval has passed
        text, blocks = render.progress(self.task, self.posts.get("tool"), self.relay.board_url(self.task_id))
        entry: dict[str, Any] = self.posts.get("progress") or {}
        if entry.get("ts"):
            await self.client.chat_update(channel=self.b.channel, ts=entry["ts"], text=text, blocks=blocks)
        else:
            await self._post_once("progress", text, blocks)
        self.dirty = False
        self.last_update = time.monotonic()

    async def _question(self, seq: int, data: dict[str, Any]) -> None:
        key = f"q{seq}"
        text, blocks = render.question(
            self.task_id,
            seq,
            str(data.get("question") or ""),
            list(data.get("choices") or []),
            self.relay.board_url(self.task_id),
        )
        await self._post_once(key, text, blocks)
        self.posts["question"] = {"key": key, "text": str(data.get("question") or "")}

    async def _answered(self, data: dict[str, Any]) -> None:
        q: dict[str, Any] = self.posts.get("question") or {}
        post: dict[str, Any] = self.posts.get(q.get("key") or "") or {}
        ts = post.get("ts")
        if not ts:
            return
        text, blocks = render.answered(str(q.get("text") or ""), str(data.get("answer")), data.get("by"))
        await self.client.chat_update(channel=self.b.channel, ts=ts, text=text, blocks=blocks)

    async def _finish(self, end: int) -> None:
        """Run again from the top if anything here fails (each post is recorded once)."""
        assert self.task is not None
        self.dirty = True
        self.posts["tool"] = None
        await self._progress(force=True)
        async with self.db.read() as s:
            artifacts = [
                a for a in await task_service.list_artifacts(s, self.task_id) if a.size <= MAX_FILE_BYTES
            ][:MAX_FILES]
        text, blocks = render.result(self.task, self.relay.board_url(self.task_id), files=len(artifacts))
        await self._post_once("result", text, blocks)
        for a in artifacts:
            await self._upload(a.name)
        await self._save(
            status="done", last_seq=end, lease_owner=None, lease_until=None, posts=dict(self.posts)
        )
        self.finished = True

    async def _upload(self, name: str) -> None:
        """At most once: a file upload has no metadata to find it by after a crash, so a
        pending one found on a restart is skipped rather than uploaded twice."""
        key = f"file:{name}"
        if key in self.posts:
            return
        self.posts[key] = {"pending": True}
        await self._save(posts=dict(self.posts))
        async with self.db.read() as s:
            artifact = await task_service.get_artifact(s, self.task_id, name)
        content = b"".join([piece async for piece in artifact_store.chunks(self.db, artifact.id)])
        resp = await self.client.files_upload_v2(
            channel=self.b.channel,
            thread_ts=self.b.thread_ts,
            content=content,
            filename=name,
            title=name,
        )
        file: dict[str, Any] = resp.get("file") or {}
        self.posts[key] = {"id": file.get("id")}
        await self._save(posts=dict(self.posts))

    async def give_up(self, exc: BaseException) -> None:
        """A Slack error that waiting will not fix: logged, and the binding marked failed."""
        code = error_code(exc)
        log.error("slack relay: task %s: giving up on thread %s: %s", self.task_id, self.b.thread_key, code)
        self.finished = True
        with contextlib.suppress(LeaseLost):
            await self._save(status="failed", error=code, lease_owner=None, lease_until=None)
