"""The README's screenshots (docs/screenshots/), taken from a real board in Chromium.

They are taken on every run; they replace the committed files when those are missing or
with META_AGENT_UPDATE_SCREENSHOTS=1, so an ordinary test run leaves the tree clean.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create
from tests.board.test_board_live import card
from tests.support import ROOT, LiveServer

SHOTS = ROOT / "docs" / "screenshots"

AGENTS = {
    "k8s-health": ("prod", "Checks Kubernetes cluster health"),
    "deployer": ("staging", "Deploys services with Helm"),
    "sql-analyst": ("prod", "Answers questions from the warehouse"),
    "docs-writer": ("staging", "Writes and updates documentation"),
}

REPORT = """I checked the **prod-eu** cluster.

- 12 of 12 nodes are `Ready`
- 3 pods are in `CrashLoopBackOff` in namespace *payments*

```
payments-api-7d9f   0/1   CrashLoopBackOff   14   2h
```

Next I'll read the logs of `payments-api` to find the cause."""


def started(call: str, tool: str, command: str) -> tuple[str, dict[str, Any]]:
    return ("tool_started", {"tool_call_id": call, "tool": tool, "args": {"command": command}})


def completed(call: str, tool: str, output: str, seconds: float) -> tuple[str, dict[str, Any]]:
    data = {"tool_call_id": call, "tool": tool, "output": output, "duration_seconds": seconds}
    return ("tool_completed", data)


def populate(c: Any) -> str:
    for q in ("prod", "staging"):
        c.post("/worker-queues", json={"name": q, "environment": q})
    for name, (queue, desc) in AGENTS.items():
        body = {
            "name": name,
            "runtime": "command",
            "command": ["true"],
            "default_queue": queue,
            "description": desc,
        }
        c.post("/agents", json=body)
    plan = [
        ("docs-writer", "Update the runbook for the payments service", "slack", "maria", "failed"),
        ("sql-analyst", "How many orders failed payment yesterday, by country?", "mcp", "ken", "completed"),
        ("deployer", "Deploy checkout v2.14 to staging", "cli", "sam", "completed"),
        ("k8s-health", "Check node pressure on prod-us", "board", "ada", "cancelled"),
        ("deployer", "Roll out the new ingress config", "slack", "maria", "requires_input"),
        ("sql-analyst", "Weekly revenue summary for the leadership sync", "mcp", "ken", "running"),
        ("k8s-health", "Check the K8s cluster health on prod-eu", "slack", "ada", "running"),
        ("docs-writer", "Write release notes for v2.14", "cli", "sam", "pending"),
        ("deployer", "Deploy my app to staging", "board", "ada", "pending"),
    ]
    w = {q: RawWorker(c, queue=q, worker_id=f"worker-{q}") for q in ("prod", "staging")}
    detail = ""
    for agent, prompt, source, who, status in plan:
        tid = create(c, prompt, agent=agent, source=source, requested_by=who)
        if status == "pending":
            continue
        rw = w[AGENTS[agent][0]]
        rw.claim(tid)
        if status == "cancelled":
            c.post(f"/tasks/{tid}/cancel")
            rw.fail(tid, "cancelled", "stopped on request")
        elif status == "failed":
            rw.events(tid, ("tool_started", {"tool_call_id": "a", "tool": "git_push"}))
            rw.fail(tid, "tool_error", "git push rejected: branch is protected")
        elif status == "completed":
            rw.complete(tid, {"output": "done"})
        elif status == "requires_input":
            rw.ask(
                tid,
                "Apply to all 3 regions at once, or canary in eu-west first?",
                ["all regions", "canary first"],
            )
        elif agent == "k8s-health":
            detail = tid
            rw.events(
                tid,
                started("1", "kubectl", "get nodes -o wide"),
                completed("1", "kubectl", "12 nodes Ready", 0.8),
                started("2", "kubectl", "get pods -A --field-selector=status.phase!=Running"),
                completed("2", "kubectl", "payments-api-7d9f 0/1 CrashLoopBackOff", 1.2),
                ("message_delta", {"delta": REPORT}),
                started("3", "kubectl", "logs payments-api-7d9f --tail 200"),
                phase="executing",
            )
        else:
            rw.events(tid, started("q", "sql_query", "select ..."), phase="executing")
    return detail


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_screenshots(page: Any, server: LiveServer, tmp_path: Path) -> None:
    with server.client() as c:
        detail = populate(c)
    page.set_viewport_size({"width": 1440, "height": 820})
    page.emulate_media(color_scheme="light")
    page.goto(server.url + "/")
    expect(page.locator(".col-running .tool")).to_have_count(2)  # current tool calls shown
    expect(page.locator(".col-requires_input .question")).to_have_count(1)
    # A failed card says why, in words, with the next step (issue #16).
    expect(page.locator(".col-failed .failure-class").first).to_have_text("Tool error")
    page.screenshot(path=str(tmp_path / "board.png"))

    page.goto(f"{server.url}/#/tasks/{detail}/output")
    expect(card(page, "running", detail)).to_be_visible()
    expect(page.locator("#tp-output pre")).to_be_visible()
    expect(page.get_by_role("tab", name="Tool Calls 3")).to_be_visible()
    page.locator("#panel-title").blur()
    page.screenshot(path=str(tmp_path / "task-detail.png"))

    page.goto(f"{server.url}/#/history")
    expect(page.locator("table.history tbody tr")).to_have_count(9)  # this week: every task above
    page.screenshot(path=str(tmp_path / "history.png"))
    update = os.environ.get("META_AGENT_UPDATE_SCREENSHOTS") == "1"
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("board.png", "task-detail.png", "history.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        if update or not (SHOTS / name).exists():
            shutil.copy(tmp_path / name, SHOTS / name)
