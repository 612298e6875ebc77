"""A conversation with the meta agent, one turn at a time: the layer every chat surface uses.

    prepared = await prepare_turn(db, settings, message="check the cluster", source="board", ...)
    result = await prepared.run(emit)          # TurnResult(conversation_id, reply, task_ids, ...)

`POST /chat` and Slack call this through the chat port (`kernel.chat`, implemented here by
`ConversationChat`); the CLI drives `MetaAgent` directly because it can ask at
the terminal. A turn loads the stored conversation (by id, or by `external_id` such as a Slack
thread, created on first use), runs the agent with the person's message (or their decision
on a plan waiting for approval), and stores the conversation again, also when the turn
fails or is cancelled halfway, so a restart or a follow-up ("retry it") carries on from it.

Approvals (setting `approvals`): `risky` (default) holds a plan that would run an agent
marked risky (a team with a risky member, a retry of a risky agent's task) until the person
approves it; `always` holds every plan; `never` none. A held plan ends the turn with an
`approval` event; the next turn is the person's `Decision`, or a plain "yes"/"no" message.

Turns of one conversation run one at a time in this process (a lock per conversation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from dataclasses import dataclass
from typing import Any

from kernel import errors
from kernel.chat import Decision, Emit, ModelNotConfigured, TurnResult
from kernel.settings import Settings
from store import conversations
from store.audit import Actor, record
from store.db import Database, Tx

__all__ = ["ConversationChat", "PreparedTurn", "prepare_turn"]

log = logging.getLogger(__name__)

APPROVAL_MODES = ("risky", "always", "never")
_YES = re.compile(r"^\s*(y|yes|yep|ok|okay|approve[ds]?|go( ahead)?|lgtm|do it|sure)\s*[.!]*\s*$", re.I)
_NO = re.compile(r"^\s*(n|no|nope|reject(ed)?|deny|denied|don'?t|stop|cancel)\b", re.I)


_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock(conversation_id: str) -> asyncio.Lock:
    lock = _locks.get(conversation_id)
    if lock is None:
        lock = asyncio.Lock()
        _locks[conversation_id] = lock
    return lock


async def prepare_turn(
    db: Database,
    settings: Settings,
    *,
    base_url: str,
    api_key: str | None,
    message: str | None = None,
    decision: Decision | None = None,
    conversation_id: str | None = None,
    external_id: str | None = None,
    source: str = "board",
    requested_by: str | None = None,
    surface_note: str | None = None,
) -> PreparedTurn:
    """Check everything that can be refused up front (no model, no such conversation, a
    decision on nothing) and load or create the conversation."""
    if not settings.model:
        from meta_agent.agent import MODEL_SETTING_HELP

        raise ModelNotConfigured(f"{MODEL_SETTING_HELP} Set it where the control plane runs and restart it.")
    if (message is None) == (decision is None):
        raise errors.Invalid("send either a message or a decision", code="invalid_chat")
    async with db.tx() as tx:
        if conversation_id:
            conv = await conversations.get_conversation(tx.session, conversation_id)
        elif external_id:
            conv = await conversations.find_or_create(
                tx, external_id=external_id, source=source, requested_by=requested_by
            )
        else:
            conv = await conversations.create_conversation(tx, source=source, requested_by=requested_by)
        if decision is not None and (conv.pending or {}).get("approval_id") != decision.approval_id:
            raise errors.Conflict(
                "nothing is waiting for that approval in this conversation (it was decided, or "
                "superseded by a later message)",
                code="approval_not_pending",
            )
        return PreparedTurn(
            db=db,
            settings=settings,
            base_url=base_url,
            api_key=api_key,
            conversation_id=conv.id,
            message=message,
            decision=decision,
            source=conv.source if conversation_id or external_id else source,
            requested_by=requested_by or conv.requested_by,
            surface_note=surface_note,
        )


class ConversationChat:
    """The meta agent behind the chat port (`kernel.chat.Chat`), bound to one database."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    def warm(self) -> None:
        import importlib

        from kernel.llm import load_litellm

        # Loaded now (at startup) so the first chat turn does not pay for them.
        importlib.import_module("mcp")
        importlib.import_module("meta_agent.agent")

        load_litellm()  # with the bundled cost map: a bare `import litellm` fetches it over the network

    async def prepare(self, **kw: Any) -> PreparedTurn:
        return await prepare_turn(self.db, self.settings, **kw)


@dataclass
class PreparedTurn:
    db: Database
    settings: Settings
    base_url: str
    api_key: str | None
    conversation_id: str
    message: str | None
    decision: Decision | None
    source: str
    requested_by: str | None
    surface_note: str | None

    async def run(self, emit: Emit) -> TurnResult:
        """Run the turn; every event goes to `emit` (sync or async), first `conversation`."""
        from meta_agent.agent import emit_event

        async def out(event: dict[str, Any]) -> None:
            await emit_event(emit, event)

        await out({"type": "conversation", "conversation_id": self.conversation_id})
        async with _lock(self.conversation_id):
            return await self._run_locked(out)

    async def _run_locked(self, out: Any) -> TurnResult:
        from kernel.llm_settings import meta_agent_config
        from meta_agent.agent import SYSTEM_PROMPT, MetaAgent, ModelCallFailed, chat_backend

        history, pending, decision = await self._load()
        backend = chat_backend(
            self.base_url,
            self.api_key,
            source=self.source,
            requested_by=self.requested_by,
            public_url=self.settings.public_url or self.base_url,
        )
        prompt = SYSTEM_PROMPT + (f"\n\n{self.surface_note}" if self.surface_note else "")
        agent = MetaAgent(
            meta_agent_config(self.settings),
            backend,
            approve=_policy(getattr(self.settings, "approvals", "risky"), backend),
            system_prompt=prompt,
        )
        result = TurnResult(self.conversation_id)
        added: list[dict[str, Any]] = []
        try:
            if decision is not None:
                await agent.resume(
                    history,
                    pending or {},
                    decision.approve,
                    out,
                    by=decision.by,
                    reason=decision.reason,
                    added=added,
                )
            else:
                await agent.turn(history, self.message or "", out, added=added)
        except ModelCallFailed as exc:
            result.error = {"code": exc.code, "message": exc.message}
        except errors.MetaAgentError:
            raise
        except Exception:
            log.exception("meta agent turn failed (conversation %s)", self.conversation_id)
            result.error = {"code": "internal_error", "message": "the meta agent failed; it has been logged"}
        finally:
            # Stored also when cancelled (the person left mid-turn): shielded so it completes.
            save = asyncio.ensure_future(self._save(history, added, agent, decision, pending))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(save)
            if not save.done():
                await save
        if result.error is not None:
            await out({"type": "error", **result.error})
        result.reply = next(
            (
                m.get("content") or ""
                for m in reversed(added)
                if m.get("role") == "assistant" and m.get("content")
            ),
            "",
        )
        result.task_ids = list(agent.task_ids)
        result.approval = agent.pending
        await out(
            {
                "type": "done",
                "conversation_id": self.conversation_id,
                "reply": result.reply,
                "task_ids": result.task_ids,
                "approval": result.approval,
            }
        )
        return result

    async def _load(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, Decision | None]:
        """The history, the plan awaiting a decision, and the decision this turn brings."""
        async with self.db.read() as session:  # re-read under the lock: a turn may just have ended
            conv = await conversations.get_conversation(session, self.conversation_id)
            history, pending = list(conv.messages), conv.pending
        decision = self.decision
        if decision is not None and (pending or {}).get("approval_id") != decision.approval_id:
            raise errors.Conflict("that plan was already decided", code="approval_not_pending")
        if decision is None and pending is not None and self.message is not None:
            # A plain yes/no answers the plan; anything else sets it aside.
            if _YES.match(self.message):
                decision = Decision(pending["approval_id"], True, by=self.requested_by)
            elif _NO.match(self.message):
                decision = Decision(pending["approval_id"], False, by=self.requested_by, reason=self.message)
        return history, pending, decision

    async def _save(
        self,
        history: list[dict[str, Any]],
        added: list[dict[str, Any]],
        agent: Any,
        decision: Decision | None = None,
        pending: dict[str, Any] | None = None,
    ) -> None:
        if not added and self.message is not None:
            added.append({"role": "user", "content": self.message})
        async with self.db.tx() as tx:
            await conversations.save_turn(
                tx,
                self.conversation_id,
                _close_open_calls([*history, *added]),
                agent.task_ids,
                pending=agent.pending,
            )
            if decision is not None:  # recorded with the turn that applied it
                await self._audit(tx, decision, pending or {})

    async def _audit(self, tx: Tx, decision: Decision, plan: dict[str, Any]) -> None:
        who = decision.by or self.requested_by or "anonymous"
        if self.source == "slack":  # a Slack user id, named as the Slack actions name it
            actor = Actor(who if who.startswith("slack:") else f"slack:{who}", "slack", "slack")
        else:
            actor = Actor(who, "person", self.source)
        details = {"approval_id": decision.approval_id, "tool": plan.get("tool"), "reason": decision.reason}
        action = "plan.approve" if decision.approve else "plan.reject"
        await record(tx, actor, action, "conversation", self.conversation_id, details)


def _close_open_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every tool call a result: a turn cut off mid-call must not leave the stored
    history invalid for the next model call."""
    out: list[dict[str, Any]] = []
    open_ids: list[Any] = []  # the ids as the stored messages hold them
    for m in messages:
        if open_ids and m.get("role") != "tool":
            out += [{"role": "tool", "tool_call_id": i, "content": "(interrupted)"} for i in open_ids]
            open_ids = []
        if m.get("role") == "tool":
            with contextlib.suppress(ValueError):
                open_ids.remove(m.get("tool_call_id"))
        out.append(m)
        if m.get("role") == "assistant" and m.get("tool_calls"):
            open_ids = [c.get("id") for c in m["tool_calls"]]
    out += [{"role": "tool", "tool_call_id": i, "content": "(interrupted)"} for i in open_ids]
    return out


def _policy(mode: str, backend: Any) -> Any:
    """The `approve` callback of a chat surface: DEFER a plan the setting says to hold."""
    from meta_agent.agent import DEFER

    async def approve(tool: str, args: dict[str, Any], plan: str) -> Any:
        if mode == "never":
            return True
        if mode == "always":
            return DEFER
        return DEFER if await _risky(backend, tool, args) else True

    return approve


async def _risky(backend: Any, tool: str, args: dict[str, Any]) -> bool:
    """Does this plan run an agent marked risky? Unknown names are not: the call fails anyway."""
    try:
        async with backend.client("look up the agent") as c:
            if tool == "retry_task":
                task = await c.executions.get(str(args.get("task_id")))
                names = [task.agent] if task.agent else []
                team = task.team
            else:
                names = [str(args["agent"])] if args.get("agent") else []
                team = args.get("team")
            if team:
                t = await c.teams.get(str(team))
                names += [t.coordinator, *t.members]
            for name in filter(None, names):
                if (await c.agents.get(name)).risky:
                    return True
    except Exception as exc:  # ToolError and friends: let the tool call report the problem
        log.debug("risk lookup failed: %s", exc)
    return False
