"""`make bench BENCH_ARGS=--board`: the board's first paint with data, 10,000 tasks in the store.

Protocol: seed N tasks directly through the store (the same functions the API calls, so
every status change has its event) into a fresh database, spread over the six columns
(about 15 % pending, 7 % running, 3 % requires input, 60 % completed, 10 % failed, 5 %
cancelled); start `meta-agent serve` on it; open `/` in headless Chromium (Debian's, via
Playwright) and measure from navigation start to the first frame after the first card is
in the DOM (`performance.now()` in a requestAnimationFrame callback, which runs just
before that frame paints). One cold load, then warm loads in fresh browser contexts
(nothing cached); the median of the warm loads is the figure. Also the server side alone:
`GET /api/v1/board?limit=30` over HTTP, median of 20.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records when the first card reaches the DOM, and the frame after it (≈ first paint).
FIRST_CARD_PROBE = """
new MutationObserver((_, obs) => {
  if (!document.querySelector('#board li[data-id]')) return;
  obs.disconnect();
  window.__firstCardInDom = performance.now();
  requestAnimationFrame(() => { window.__firstCardPainted = performance.now(); });
}).observe(document, {childList: true, subtree: true});
"""

PHASES = """[
  window.__firstCardInDom, window.__firstCardPainted,
  performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
  (performance.getEntriesByType('resource').find(e => e.name.includes('/whoami')) || {}).responseEnd || 0,
]"""


async def seed(url: str, n: int) -> dict[str, int]:
    """N tasks through the store, spread over the columns; returns the column counts."""
    from store import catalog, tasks
    from store.db import Database
    from store.leases import Lease
    from store.models import Agent, WorkerQueue

    db = Database(url)
    try:
        async with db.tx() as tx:
            await catalog.create_queue(tx, WorkerQueue(name="board-bench"))
            for i in range(5):
                await catalog.create_agent(
                    tx, Agent(name=f"agent-{i}", runtime="noop", default_queue="board-bench")
                )
        sources = ["api", "cli", "mcp", "slack", "board"]
        for start in range(0, n, 500):
            async with db.tx() as tx:
                for i in range(start, min(n, start + 500)):
                    new = tasks.NewTask(
                        prompt=f"Task {i}: check the health of service {i % 97}\nwith details",
                        agent=f"agent-{i % 5}",
                        source=sources[i % 5],
                        requested_by=f"user{i % 13}",
                    )
                    await tasks.create_task(tx, new)
        # Claim the oldest 85 % and finish most of them; the newest 15 % stay pending.
        plan = ["completed"] * 60 + ["failed"] * 10 + ["cancelled"] * 5 + ["running"] * 7 + ["ask"] * 3
        target = n * 85 // 100
        done = 0
        while done < target:
            async with db.tx() as tx:
                claimed = await tasks.claim_tasks(
                    tx, "board-bench", "bench-worker", min(200, target - done), 3600
                )
                for c in claimed:
                    t, kind, lease = c.task, plan[done % len(plan)], Lease(c.token)
                    done += 1
                    if kind == "completed":
                        await tasks.complete(tx, t.id, lease, result={"output": "ok"})
                    elif kind == "failed":
                        await tasks.fail(tx, t.id, lease, code="exit_code", message="exit status 1")
                    elif kind == "cancelled":
                        await tasks.cancel(tx, t.id)
                        await tasks.fail(tx, t.id, lease, code="cancelled", message="stopped")
                    elif kind == "ask":
                        await tasks.request_input(tx, t.id, lease, question="Proceed?", choices=["yes", "no"])
        async with db.read() as s:
            return await tasks.count_by_status(s)
    finally:
        await db.dispose()


def _first_paint(pw: Any, base: str, profile: Path) -> dict[str, float]:
    ctx = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=ARGS,
        viewport={"width": 1440, "height": 900},
    )
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.add_init_script(FIRST_CARD_PROBE)
        page.goto(base + "/", wait_until="commit")
        page.wait_for_function("window.__firstCardPainted !== undefined", timeout=30_000)
        dom, painted, dcl, who = page.evaluate(PHASES)
        return {
            "first_card_in_dom_ms": round(dom, 1),
            "first_paint_with_data_ms": round(painted, 1),
            # Where the time goes: the page and its modules, then the sign-in check, then
            # the board stream's snapshot (the rest, up to the first card).
            "modules_ready_ms": round(dcl, 1),
            "whoami_done_ms": round(who, 1),
        }
    finally:
        ctx.close()


def measure(base: str, loads: int = 5) -> dict[str, Any]:
    """First paint of the board served at `base` (already seeded), and `/board` alone."""
    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=base + "/api/v1", timeout=30) as c:
        c.get("/board", params={"limit": 30}).raise_for_status()
        api_ms = []
        for _ in range(20):
            t = time.perf_counter()
            c.get("/board", params={"limit": 30}).raise_for_status()
            api_ms.append((time.perf_counter() - t) * 1000)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        runs = [_first_paint(pw, base, Path(tmp) / f"profile-{i}") for i in range(loads + 1)]
    warm = [r["first_paint_with_data_ms"] for r in runs[1:]]
    return {
        "board_api_p50_ms": round(statistics.median(api_ms), 1),
        "cold_first_paint_ms": runs[0]["first_paint_with_data_ms"],
        "first_paint_p50_ms": round(statistics.median(warm), 1),
        "first_paint_max_ms": round(max(warm), 1),
        "first_card_in_dom_p50_ms": round(statistics.median(r["first_card_in_dom_ms"] for r in runs[1:]), 1),
        "modules_ready_p50_ms": round(statistics.median(r["modules_ready_ms"] for r in runs[1:]), 1),
        "whoami_done_p50_ms": round(statistics.median(r["whoami_done_ms"] for r in runs[1:]), 1),
    }
