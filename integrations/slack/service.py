"""What the Slack listeners do: conversations in threads, answers, retries, commands.

The listeners (integrations/slack/app.py) only parse Slack's payloads and hand over here;
work that can take long (a meta-agent turn, Slack calls) runs as a background task, so Slack
gets its acknowledgement within its 3 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack import render
from integrations.slack.relay import Relay
from integrations.slack.reply import ReplyStream
from integrations.slack.web import api, error_code
from kernel import errors
from kernel.chat import Chat, Decision, ModelNotConfigured
from kernel.settings import Settings
from store import slack as slack_store
from store import tasks as task_service
from store.audit import Actor, record
from store.db import Database
from store.slack import ThreadRef
from store.slack_models import SlackThread

log = logging.getLogger("integrations.slack")

SURFACE_NOTE = (
    "You are talking with people in a Slack thread. The progress of every task you create, its "
    "questions and its result are relayed to this thread automatically (and people answer the "
    "questions there). So after create_task, reply briefly with the plan and the board link, "
    "and do NOT call stream_task. Slack formatting: *bold*, `code`, <url|text> links."
)
NOT_ALLOWED = "Only people in this conversation can answer its questions."
ANSWERED = "That question was already answered."


def _slack(user: str) -> Actor:
    """A Slack person, for the audit log (their Slack user id)."""
    return Actor(f"slack:{user}", "slack", "slack")


class SlackService:
    def __init__(
        self, db: Database, settings: Settings, client: AsyncWebClient, base_url: str, chat: Chat
    ) -> None:
        self.db, self.settings, self.chat = db, settings, chat
        self.client = api(client)
        self.base_url = base_url  # this control plane, for the meta agent's tools
        self.board_base = (settings.public_url or base_url).rstrip("/")
        raw = settings.slack_allowed_users or ""
        self.allowed = {u.strip() for u in raw.replace(";", ",").split(",") if u.strip()}
        self.relay = Relay(db, self.client, self.board_base, interval=settings.slack_update_interval)
        self._jobs: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.relay.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Turns in flight get `grace` seconds to finish (their reply, their binding) before
        they are cancelled; the relay finishes the step it is in."""
        jobs = list(self._jobs)
        if jobs:
            _, late = await asyncio.wait(jobs, timeout=grace)
            for job in late:
                job.cancel()
            for job in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job
        await self.relay.stop()

    def spawn(self, coro: Coroutine[Any, Any, object], what: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("slack: %s failed: %s", what, error_code(exc), exc_info=True)

        job = asyncio.create_task(guarded())
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # --- who may do what --------------------------------------------------------------------

    def may_talk(self, user: str) -> bool:
        """With an allow-list, only the people on it; without, anyone who can reach the bot."""
        return not self.allowed or user in self.allowed

    def may_answer(self, thread: SlackThread | None, user: str) -> bool:
        """The allow-list when set, else the people in the conversation (who spoke to the bot)."""
        if self.allowed:
            return user in self.allowed
        return thread is not None and user in (thread.participants or [])

    # --- the threads' state, for the listeners ----------------------------------------------

    async def first_sight(self, event_id: str) -> bool:
        """Record a Slack event id; False for a retried delivery of one already taken in."""
        async with self.db.tx() as tx:
            return await slack_store.first_sight(tx, event_id)

    async def touch_thread(self, ref: ThreadRef, speaker: str | None) -> None:
        async with self.db.tx() as tx:
            await slack_store.touch_thread(tx, ref, speaker)

    async def thread(self, key: str) -> SlackThread | None:
        async with self.db.read() as s:
            return await slack_store.get_thread(s, key)

    async def waits_for_answer(self, key: str) -> bool:
        """Whether a task bound to this thread waits for an answer."""
        async with self.db.read() as s:
            return await slack_store.waiting_in_thread(s, key) is not None

    async def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        except Exception as exc:
            log.warning("slack: ephemeral message failed: %s", error_code(exc))

    # --- conversations ----------------------------------------------------------------------

    async def converse(
        self,
        ref: ThreadRef,
        user: str,
        message: str | None,
        *,
        decision: Decision | None = None,
        message_ts: str | None = None,
    ) -> None:
        """One meta-agent turn in a thread: shows it is working, streams the reply, binds the
        tasks it creates to the thread (the relay takes them from there)."""
        await self._working(ref, message_ts, True)
        reply = ReplyStream(self.client, ref.channel, ref.thread_ts, self.settings.slack_update_interval)

        async def emit(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "text":
                reply.add(str(event.get("text") or ""))
            elif kind == "text_reset":
                reply.reset()
            elif kind == "task" and event.get("task_id"):
                # Bound durably now, not after the turn: the task may already be running.
                async with self.db.tx() as tx:
                    await slack_store.bind(tx, str(event["task_id"]), ref)
                self.relay.wake(str(event["task_id"]))
            elif kind == "approval":
                await reply.flush()
                text, blocks = render.approval(
                    str(event.get("approval_id")),
                    str(event.get("tool")),
                    event.get("arguments"),
                    str(event.get("plan") or ""),
                )
                await self.client.chat_postMessage(
                    channel=ref.channel, thread_ts=ref.thread_ts, text=text, blocks=blocks
                )
            elif kind == "tool_call" and ref.kind == "assistant":
                await self._status(ref, f"is calling {event.get('name')}…")
            elif kind == "error":
                reply.add(f"\n:warning: {event.get('message')}")

        try:
            turn = await self.chat.prepare(
                base_url=self.base_url,
                api_key=self.settings.slack_api_key,
                message=message,
                decision=decision,
                external_id=ref.key,
                source="slack",
                requested_by=user,
                surface_note=SURFACE_NOTE,
            )
            result = await turn.run(emit)
            async with self.db.tx() as tx:
                await slack_store.set_conversation(tx, result.task_ids, result.conversation_id)
        except ModelNotConfigured as exc:
            reply.add(f":warning: {exc}")
        except errors.MetaAgentError as exc:
            reply.add(f":warning: {exc}")
        finally:
            try:
                await reply.close()
            finally:
                await self._working(ref, message_ts, False)

    async def _working(self, ref: ThreadRef, message_ts: str | None, on: bool) -> None:
        """Assistant threads get a status line; elsewhere an :eyes: reaction on the message."""
        try:
            if ref.kind == "assistant":
                if on:
                    await self._status(ref, "is thinking…")
            elif message_ts:
                call = self.client.reactions_add if on else self.client.reactions_remove
                await call(channel=ref.channel, timestamp=message_ts, name="eyes")
        except Exception as exc:  # cosmetic: never stops the turn
            log.info("slack: working indicator failed: %s", error_code(exc))

    async def _status(self, ref: ThreadRef, status: str) -> None:
        with contextlib.suppress(Exception):
            await self.client.assistant_threads_setStatus(
                channel_id=ref.channel, thread_ts=ref.thread_ts, status=status
            )

    # --- answers ----------------------------------------------------------------------------

    async def answer(self, task_id: str, answer: str, user: str, seq: int | None = None) -> str | None:
        """Answer a task's question for `user`; None when done, else why not (for the person).
        One transaction: who may answer, which question is open, and the answer itself."""
        try:
            async with self.db.tx() as tx:
                thread = await slack_store.thread_of_task(tx.session, task_id)
                if not self.may_answer(thread, user):
                    return NOT_ALLOWED
                if seq is not None and seq != await slack_store.question_seq(tx.session, task_id):
                    return ANSWERED
                await task_service.respond(tx, task_id, answer, by=f"slack:{user}")
                await record(tx, _slack(user), "task.answer", "task", task_id)
        except errors.InvalidTransition:
            return ANSWERED
        except errors.MetaAgentError as exc:
            return str(exc)
        return None

    async def thread_reply(self, ref: ThreadRef, user: str, text: str, message_ts: str) -> None:
        """A message in a thread the bot is in (no mention): it answers the question a task
        there waits on. Otherwise, in a channel it is people talking among themselves (they
        mention the bot to address it); in a DM it continues the conversation."""
        async with self.db.read() as s:
            thread = await slack_store.get_thread(s, ref.key)
            waiting = None if thread is None else await slack_store.waiting_in_thread(s, ref.key)
        if thread is None:
            return  # not one of ours
        if waiting is not None:
            refusal = await self.answer(waiting.id, text, user)
            if refusal == NOT_ALLOWED:
                await self.ephemeral(ref.channel, user, refusal, ref.thread_ts)
            elif refusal:
                log.info("slack: reply in %s not taken as an answer: %s", ref.key, refusal)
            return
        if thread.kind != "channel" and user in thread.participants and self.may_talk(user):
            await self.converse(ref, user, text, message_ts=message_ts)

    async def retry(self, task_id: str, user: str) -> str | None:
        """A new attempt at a task, bound to the same thread: the task and its binding commit
        together (a crash between them would leave a task nobody relays)."""
        try:
            async with self.db.tx() as tx:
                binding = await slack_store.get_binding(tx.session, task_id)
                thread = await slack_store.thread_of_task(tx.session, task_id)
                if binding is None or not self.may_answer(thread, user):
                    return "Only people in this conversation can retry its tasks."
                new = await task_service.retry(
                    tx,
                    task_id,
                    source="slack",
                    requested_by=user,
                    max_prompt_chars=self.settings.max_prompt_chars,
                    max_attempts=self.settings.max_attempts,
                )
                ref = ThreadRef(binding.team_id, binding.channel, binding.thread_ts)
                await slack_store.bind(tx, new.id, ref, binding.conversation_id)
                await record(tx, _slack(user), "task.retry", "task", task_id, {"new_task_id": new.id})
        except errors.MetaAgentError as exc:
            return str(exc)
        self.relay.wake(new.id)
        return None

    # --- /meta-agent ------------------------------------------------------------------------

    async def list_tasks(self) -> str:
        async with self.db.read() as s:
            tasks = await slack_store.unfinished_tasks(s, limit=20)
        return render.task_list(tasks, self.board_base)

    async def cancel(self, task_id: str, user: str) -> str:
        try:
            async with self.db.tx() as tx:
                task = await slack_store.find_task(tx.session, task_id)
                if task is None:
                    return f"No task `{task_id}`."
                thread = await slack_store.thread_of_task(tx.session, task_id)
                if not (self.allowed and user in self.allowed) and not (
                    task.requested_by == user or self.may_answer(thread, user)
                ):
                    return "You can cancel the tasks you asked for, or those of a conversation you are in."
                task = await task_service.cancel(tx, task_id, by=f"slack:{user}")
                await record(tx, _slack(user), "task.cancel", "task", task_id, {"status": task.status})
        except errors.MetaAgentError as exc:
            return f"Cannot cancel `{task_id}`: {exc}"
        return (
            f"Task `{task_id}` is cancelled."
            if task.status == "cancelled"
            else f"Cancel requested: task `{task_id}` stops within seconds."
        )

    async def start_from_command(self, team: str, channel: str, user: str, text: str) -> str | None:
        """A new conversation from `/meta-agent some request`: a message in the channel to
        thread under, then a turn there."""
        try:
            resp = await self.client.chat_postMessage(channel=channel, text=f"<@{user}> asked: {text}")
        except Exception as exc:
            return f"I cannot post in this channel ({error_code(exc)}); invite me or DM me."
        kind = "im" if channel.startswith("D") else "channel"
        ref = ThreadRef(team, channel, str(resp["ts"]), kind)
        await self.touch_thread(ref, user)
        self.spawn(self.converse(ref, user, text), "a conversation")
        return None
