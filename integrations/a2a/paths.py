"""Where A2A is served (kept apart so the plugin names them without importing a2a-sdk)."""

from __future__ import annotations

__all__ = ["CARD_PATH", "RPC_PATH"]

CARD_PATH = "/.well-known/agent-card.json"  # a2a.utils.constants.AGENT_CARD_WELL_KNOWN_PATH
RPC_PATH = "/a2a"
