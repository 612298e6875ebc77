"""MCP Apps fixtures: Chromium (the board tests' fixtures), a live control plane, and the test
host (tests/mcpapps/bridge.py) connected to its `/mcp`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# The board tests' browser fixtures, and their `server`, whose leases outlast a test (the raw
# worker does not heartbeat).
from tests.board.conftest import browser, playwright_driver, server  # noqa: F401
from tests.board.helpers import setup_catalog
from tests.mcpapps.bridge import HostBridge
from tests.support import LiveServer


@pytest.fixture
def plane(server: LiveServer) -> LiveServer:  # noqa: F811
    """A live control plane (SQLite and PostgreSQL) with queue q1 and the idle agent `helper`."""
    with server.client() as c:
        setup_catalog(c)
    return server


@pytest.fixture
def host(plane: LiveServer, request: pytest.FixtureRequest) -> Iterator[HostBridge]:
    """The test host, connected to `plane`; parametrised "viewer", the plane gets keys (an
    admin's in `host.keys`) and the host connects with a viewer key."""
    keys: dict[str, str] = {}
    if getattr(request, "param", None) == "viewer":
        with plane.client() as open_api:
            keys["admin"] = open_api.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
        with plane.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as api:
            made = api.post("/keys", json={"name": "viewer", "scopes": ["viewer"]})
            keys["viewer"] = made.json()["key"]
    bridge = HostBridge(plane.url, api_key=keys.get("viewer"))
    bridge.keys = keys
    bridge.start()
    yield bridge
    bridge.stop()


@pytest.fixture
def page(host: HostBridge, browser: Any) -> Iterator[Any]:  # noqa: F811
    """A page that fails the test on a JavaScript error or a CSP violation in the host or the
    view, or on any request that is not to the test host (the view has no network).

    `host` comes first so that the browser closes before the host stops."""
    pg = browser.pages[0] if browser.pages else browser.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    pg.on(
        "request",
        lambda req: None if req.url.startswith(host.url) else problems.append(f"request: {req.url}"),
    )
    yield pg
    assert not problems, problems
