"""`app.state` of the control plane, typed.

Starlette's `State` takes any attribute and gives back `Any`; `BoardState` declares what
this app keeps there, so a route reads `app_state(request).metrics` as a `Metrics`. It is
still a `State`: plugins may add their own attributes (Slack does), and `app.state.drain()`
or `app.state.key_cache` read as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import HTTPConnection

from kernel.settings import Settings
from store.auth import Gate, KeyCache
from store.db import Database

if TYPE_CHECKING:
    from board_api.feeds import Feeds
    from board_api.limits import ConnectionLimiter
    from board_api.metrics import Metrics
    from kernel.chat import Chat

__all__ = ["BoardState", "app_state", "state_of"]


class BoardState(State):
    settings: Settings
    # Who may call: open mode, the embedded worker's credential, API keys (store.auth).
    gate: Gate
    # The gate's cache, under the name a test invalidates after making a key.
    key_cache: KeyCache
    metrics: Metrics
    # worker id -> when its liveness was last written (monotonic), see routes/workers.py.
    worker_seen: dict[str, float]
    limiter: ConnectionLimiter
    chat_limiter: ConnectionLimiter
    # Set when the server is stopping: parked claims answer "nothing" at once instead of
    # holding the shutdown for up to their wait_seconds.
    draining: bool
    drain: Callable[[], None]
    # Set by the lifespan, before the first request is served:
    db: Database
    feeds: Feeds
    chat: Chat | None

    def database(self) -> Database | None:
        """The database once the lifespan has opened it (None before)."""
        db: Database | None = self._state.get("db")
        return db


def state_of(app: Starlette) -> BoardState:
    """The typed state of an app made by `board_api.app.create_app`."""
    state = app.state
    if not isinstance(state, BoardState):
        raise TypeError("not an app made by board_api.app.create_app")
    return state


def app_state(conn: HTTPConnection) -> BoardState:
    """The state of the app serving `conn` (Starlette types `conn.app` as Any)."""
    app: Starlette = conn.app
    return state_of(app)
