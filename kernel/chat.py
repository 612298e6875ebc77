"""The chat port: how a chat surface (the board's `/chat`, Slack) talks to the meta agent
without importing it. The meta agent (`meta_agent.conversation.ConversationChat`) is one
implementation; the entry point (`cli.compose`) hands it to the surfaces.

    turn = await chat.prepare(message="check the cluster", source="board", base_url=..., api_key=...)
    result = await turn.run(emit)      # TurnResult(conversation_id, reply, task_ids, ...)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernel import errors

__all__ = ["Chat", "Decision", "Emit", "ModelNotConfigured", "PreparedTurn", "TurnResult"]

# Receives each event of a turn ({"type": "text" | "task" | ...}); sync or async.
Emit = Callable[[dict[str, Any]], Awaitable[None] | None]


class ModelNotConfigured(errors.MetaAgentError):
    status = 409
    code = "model_not_configured"
    title = "No model configured"


@dataclass
class Decision:
    """The person's answer to a plan held for approval."""

    approval_id: str
    approve: bool
    by: str | None = None
    reason: str | None = None


@dataclass
class TurnResult:
    conversation_id: str
    reply: str = ""
    task_ids: list[str] = field(default_factory=list[str])
    approval: dict[str, Any] | None = None  # the plan now waiting for approval
    error: dict[str, Any] | None = None  # {"code", "message"} when the turn failed


class PreparedTurn(Protocol):
    conversation_id: str

    async def run(self, emit: Emit) -> TurnResult: ...


class Chat(Protocol):
    def warm(self) -> None:
        """Load what a first turn needs (seconds of imports); call it off the event loop."""
        ...

    async def prepare(
        self,
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
        """Refuse up front what can be refused (no model, no such conversation, a decision on
        nothing), and load or create the conversation."""
        ...
