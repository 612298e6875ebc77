"""The Bolt app: Slack's events, button presses and the slash command, parsed and handed
to `SlackService`. The same app serves HTTP mode (`POST /slack/events`, signature checked
by Bolt) and Socket Mode.

Every subscribed event has a listener (Bolt answers 404 to an unhandled one, and Slack
would retry it). Retried deliveries are dropped by `dedupe` before any listener runs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack import render
from integrations.slack.service import SlackService
from kernel.chat import Decision
from store.slack import ThreadRef

log = logging.getLogger("integrations.slack")
MENTION = re.compile(r"<@[UW][A-Z0-9]+>")
NOT_LISTED = "You are not on this bot's allow-list."

Payload = dict[str, Any]  # a Slack JSON payload (event, body, action, command)
_L = TypeVar("_L", bound=Callable[..., Awaitable[Any]])


class _Listeners(Protocol):
    """How listeners are registered on the Bolt app. Bolt declares its decorators with
    untyped `*args`/`Pattern`, which pyright strict reports as partially unknown at every
    use; the app is seen through this protocol while the listeners are added."""

    def middleware(self, fn: _L, /) -> _L: ...

    def event(self, event: str, /) -> Callable[[_L], _L]: ...

    def action(self, constraints: str | re.Pattern[str], /) -> Callable[[_L], _L]: ...

    def command(self, command: str | re.Pattern[str], /) -> Callable[[_L], _L]: ...


def build(
    service: SlackService, client: AsyncWebClient, *, signing_secret: str | None, http: bool
) -> AsyncApp:
    bolt = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        # HTTP mode: the listener (which only parses and spawns work) runs before the 200,
        # so what it records (the event id) is stored by the time Slack hears back.
        process_before_response=True,
        request_verification_enabled=http,
        raise_error_for_unhandled_request=False,
    )
    listeners = cast(_Listeners, bolt)  # the same object; see `_Listeners`
    _dedupe(listeners, service)
    _conversations(listeners, service)
    _assistant(listeners, service)
    _answers(listeners, service)
    _plans(listeners, service)
    _command(listeners, service)
    return bolt


def _dedupe(bolt: _Listeners, service: SlackService) -> None:
    @bolt.middleware
    async def dedupe(body: Payload, req: AsyncBoltRequest | None, next: Callable[[], Awaitable[Any]]) -> Any:
        """Slack redelivers an event it thinks was not received (`X-Slack-Retry-Num`, or an
        envelope's `retry_attempt`); its `event_id` is stored, so it runs once anywhere."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not await service.first_sight(str(event_id)):
            retry = (req.headers.get("x-slack-retry-num") or [None])[0] if req is not None else None
            log.info("slack: event %s already taken in (retry %s); skipped", event_id, retry)
            return BoltResponse(status=200, body="")
        return await next()


def _conversations(bolt: _Listeners, service: SlackService) -> None:
    """Mentions in channels, direct messages, and replies in the bot's threads."""

    @bolt.event("app_mention")
    async def on_mention(event: Payload, body: Payload, context: AsyncBoltContext) -> None:
        user, channel = event.get("user"), event.get("channel")
        if not user or not channel or event.get("bot_id"):
            return
        ref = ThreadRef(_team(body, event), channel, event.get("thread_ts") or event["ts"])
        if not service.may_talk(user):
            await service.ephemeral(channel, user, NOT_LISTED, ref.thread_ts)
            return
        await service.touch_thread(ref, user)
        text = MENTION.sub("", event.get("text") or "").strip() or "hello"
        service.spawn(service.converse(ref, user, text, message_ts=event["ts"]), "a conversation")

    @bolt.event("message")
    async def on_message(event: Payload, body: Payload, context: AsyncBoltContext) -> None:
        user, channel = event.get("user"), event.get("channel")
        if event.get("subtype") or event.get("bot_id") or not user or not channel:
            return  # edits, joins, bots (ourselves included)
        if user == context.bot_user_id:
            return
        text: str = event.get("text") or ""
        if event.get("channel_type") == "im":
            await _direct_message(service, event, _team(body, event), user, text)
            return
        if not event.get("thread_ts"):
            return  # channel chatter
        if context.bot_user_id and f"<@{context.bot_user_id}>" in text:
            return  # the app_mention listener has it
        ref = ThreadRef(_team(body, event), channel, event["thread_ts"])
        service.spawn(service.thread_reply(ref, user, text, event["ts"]), "a thread reply")


async def _direct_message(service: SlackService, event: Payload, team: str, user: str, text: str) -> None:
    channel: str = event["channel"]
    thread_ts: str = event.get("thread_ts") or event["ts"]
    known = await service.thread(ThreadRef(team, channel, thread_ts).key)
    ref = ThreadRef(team, channel, thread_ts, known.kind if known is not None else "im")
    if event.get("thread_ts") and await service.waits_for_answer(ref.key):
        service.spawn(service.thread_reply(ref, user, text, event["ts"]), "a thread reply")
        return
    if not service.may_talk(user):
        await service.ephemeral(channel, user, NOT_LISTED)
        return
    await service.touch_thread(ref, user)
    service.spawn(service.converse(ref, user, text, message_ts=event["ts"]), "a conversation")


def _assistant(bolt: _Listeners, service: SlackService) -> None:
    """Slack's assistant threads (the AI app pane)."""

    @bolt.event("assistant_thread_started")
    async def on_assistant_thread(event: Payload, body: Payload) -> None:
        thread = _obj(event, "assistant_thread")
        if not thread.get("channel_id") or not thread.get("thread_ts"):
            return
        ref = ThreadRef(_team(body, event), thread["channel_id"], thread["thread_ts"], "assistant")
        await service.touch_thread(ref, thread.get("user_id"))

        async def greet() -> None:
            await service.client.assistant_threads_setSuggestedPrompts(
                channel_id=ref.channel,
                thread_ts=ref.thread_ts,
                prompts=[
                    {"title": "What is running?", "message": "Which tasks are running or waiting?"},
                    {"title": "Agents", "message": "Which agents and queues are there?"},
                ],
            )

        service.spawn(greet(), "suggested prompts")

    @bolt.event("assistant_thread_context_changed")
    async def on_context_changed() -> None:
        return None  # the channel the person looks at does not change what we do


def _answers(bolt: _Listeners, service: SlackService) -> None:
    """The buttons on a task's question, and Retry on a failed task's result."""

    @bolt.action(re.compile(rf"^{render.ANSWER}_\d+$"))
    async def on_answer(ack: AsyncAck, body: Payload, action: Payload) -> None:
        await ack()
        user: str = body["user"]["id"]
        channel: str = _obj(body, "channel").get("id") or ""
        thread_ts: str | None = _obj(body, "message").get("thread_ts")
        try:
            value = json.loads(action.get("value") or "{}")
            task_id, seq, answer = str(value["t"]), int(value["s"]), str(value["a"])
        except (ValueError, KeyError, TypeError):
            await service.ephemeral(channel, user, "That button is broken; answer in the thread.", thread_ts)
            return

        async def run() -> None:
            refusal = await service.answer(task_id, answer, user, seq)
            if refusal:
                await service.ephemeral(channel, user, refusal, thread_ts)

        service.spawn(run(), "an answer")

    @bolt.action(render.RETRY)
    async def on_retry(ack: AsyncAck, body: Payload, action: Payload) -> None:
        await ack()
        user: str = body["user"]["id"]
        channel: str = _obj(body, "channel").get("id") or ""
        message = _obj(body, "message")

        async def run() -> None:
            refusal = await service.retry(str(action.get("value")), user)
            if refusal:
                await service.ephemeral(channel, user, refusal, message.get("thread_ts"))
                return
            # The Retry button goes: the new task's progress follows in the thread.
            old: list[Payload] = message.get("blocks") or []
            blocks = [b for b in old if b.get("type") != "actions"]
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<@{user}> retried it"}]}
            )
            await service.client.chat_update(
                channel=channel, ts=message["ts"], text=message.get("text") or "retried", blocks=blocks
            )

        service.spawn(run(), "a retry")


def _plans(bolt: _Listeners, service: SlackService) -> None:
    """Approve / Reject on a plan the meta agent holds for approval."""

    @bolt.action(re.compile(rf"^({render.APPROVE}|{render.REJECT})$"))
    async def on_plan(ack: AsyncAck, body: Payload, action: Payload) -> None:
        await ack()
        user: str = body["user"]["id"]
        channel: str = _obj(body, "channel").get("id") or ""
        message = _obj(body, "message")
        ref = ThreadRef(_team(body, {}), channel, message.get("thread_ts") or message.get("ts") or "")
        thread = await service.thread(ref.key)
        if thread is None:
            return
        ref = ThreadRef(thread.team_id, thread.channel, thread.thread_ts, thread.kind)
        if not service.may_answer(thread, user):
            await service.ephemeral(
                channel, user, "Only people in this conversation can decide.", ref.thread_ts
            )
            return
        approve = action["action_id"] == render.APPROVE

        async def run() -> None:
            plan = (message.get("text") or "").removeprefix("Approve this plan? ")
            text, blocks = render.decided(plan, approve, user)
            await service.client.chat_update(channel=channel, ts=message["ts"], text=text, blocks=blocks)
            await service.converse(ref, user, None, decision=Decision(str(action["value"]), approve, by=user))

        service.spawn(run(), "a plan decision")


def _command(bolt: _Listeners, service: SlackService) -> None:
    @bolt.command(re.compile(r"^/meta-agent"))
    async def on_command(ack: AsyncAck, command: Payload) -> None:
        user: str = command.get("user_id") or ""
        channel: str = command.get("channel_id") or ""
        text = (command.get("text") or "").strip()
        verb, _, rest = text.partition(" ")
        if not service.may_talk(user):
            await ack(text=NOT_LISTED)
        elif verb.lower() in ("", "help"):
            await ack(text="`/meta-agent tasks` · `/meta-agent cancel TASK_ID` · `/meta-agent <request>`")
        elif verb.lower() == "tasks":
            await ack(text=await service.list_tasks())
        elif verb.lower() == "cancel" and rest.strip():
            await ack(text=await service.cancel(rest.strip().split()[0], user))
        else:
            refusal = await service.start_from_command(command.get("team_id") or "", channel, user, text)
            await ack(text=refusal or "On it: follow the thread.")


def _obj(payload: Payload, key: str) -> Payload:
    """A nested object of a payload; {} when it is absent or null."""
    inner: Payload = payload.get(key) or {}
    return inner


def _team(body: Payload, event: Payload) -> str:
    team = body.get("team_id") or _obj(body, "team").get("id") or event.get("team") or ""
    return str(team)
