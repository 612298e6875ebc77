"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`).

Without /usr/bin/chromium (or the playwright package) the board tests skip with the
reason, except under CI, where that is an error: `.ci/run` installs Chromium.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.board import ARGS  # one list of Chromium flags for tests and the benchmark
from tests.support import LiveServer, free_port

CHROMIUM = os.environ.get("META_AGENT_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 10_000  # every expect/wait in these tests is bounded by this


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def playwright_driver() -> Iterator[Any]:
    # Per test, not per session: while Playwright's sync API is open it keeps an event loop
    # running on this thread, and every async test run after it by this process would fail.
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI requires the browser tests)")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright_driver: Any, server: LiveServer, tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile per test (its own user-data-dir).

    It depends on `server` so that it closes first: a server stopping under a browser's
    open SSE streams waits for them.
    """
    ctx = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=ARGS,
        viewport={"width": 1400, "height": 900},
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page that fails the test on any uncaught JavaScript error."""
    pg = browser.pages[0] if browser.pages else browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert not errors, f"JavaScript errors on the page: {errors}"


def start_server(database_url: str, tmp_path: Path, **overrides: Any) -> LiveServer:
    from kernel.settings import Settings

    settings = Settings(
        database_url=database_url,
        port=free_port(),
        # Leases outlast a test: the tests' raw worker does not heartbeat.
        lease_seconds=120.0,
        embedded_worker=False,
        workspace_root=str(tmp_path / "ws"),
        **overrides,
    )
    srv = LiveServer(settings)
    srv.start()
    return srv


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live control plane on the parametrised backend."""
    srv = start_server(db_url, tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def board(page: Any, server: LiveServer) -> Any:
    """The board of a live control plane, opened and showing its first snapshot."""
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(page.locator("#board[data-ready=true]")).to_be_attached()
    return page
