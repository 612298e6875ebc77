"""Conversations with the meta agent: stored so that a restart keeps the context.

Services take the `Tx` (or a read session) and only flush; the caller's boundary commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from kernel import errors
from store.db import Tx
from store.models import Conversation, utcnow

__all__ = ["create_conversation", "find_or_create", "get_conversation", "save_turn"]

# Beyond this many messages the oldest are dropped (whole turns, see `_trim`), so one
# long-lived Slack thread cannot grow a row without bound.
MAX_MESSAGES = 400


async def create_conversation(
    tx: Tx, *, source: str, requested_by: str | None = None, external_id: str | None = None
) -> Conversation:
    """A new, empty conversation."""
    row = Conversation(source=source, requested_by=requested_by, external_id=external_id)
    tx.session.add(row)
    await tx.session.flush()
    return row


async def find_or_create(
    tx: Tx, *, external_id: str, source: str, requested_by: str | None = None
) -> Conversation:
    """The conversation bound to `external_id` (e.g. a Slack thread), created on first use.

    Two first messages racing in one thread may both create one; the oldest wins from then on
    (the lookup orders by creation), so the thread still has one conversation going forward.
    """
    found = (
        await tx.session.execute(
            select(Conversation)
            .where(col(Conversation.external_id) == external_id)
            .order_by(col(Conversation.created_at), col(Conversation.id))
            .limit(1)
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    return await create_conversation(tx, source=source, requested_by=requested_by, external_id=external_id)


async def get_conversation(session: AsyncSession, conversation_id: str) -> Conversation:
    """The conversation, or `NotFound` (code `conversation_not_found`)."""
    row = await session.get(Conversation, conversation_id)
    if row is None:
        raise errors.NotFound(
            f"no conversation {conversation_id!r}; leave conversation_id out to start a new one",
            code="conversation_not_found",
        )
    return row


async def save_turn(
    tx: Tx,
    conversation_id: str,
    messages: list[dict[str, Any]],
    task_ids: list[str],
    *,
    pending: dict[str, Any] | None = None,
) -> Conversation:
    """Replace the conversation's messages after a turn, add the tasks it created, and set
    the plan now waiting for approval (None: nothing waits, a decision clears it)."""
    row = await get_conversation(tx.session, conversation_id)
    row.messages = _trim(list(messages))
    row.task_ids = list(dict.fromkeys([*row.task_ids, *task_ids]))
    row.pending = pending
    row.updated_at = utcnow()
    tx.session.add(row)
    await tx.session.flush()
    return row


def _trim(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(messages) <= MAX_MESSAGES:
        return messages
    cut = len(messages) - MAX_MESSAGES
    # Start at a user message: a tool result without its assistant call is invalid to a model.
    while cut < len(messages) and messages[cut].get("role") != "user":
        cut += 1
    return messages[cut:]
