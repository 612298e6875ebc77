"""The Block Kit the relay posts: what a person sees in the thread."""

from __future__ import annotations

import json
from datetime import timedelta

from integrations.slack import render
from store.models import Task, utcnow


def _task(**kw: object) -> Task:
    now = utcnow()
    fields: dict[str, object] = {
        "id": "t1",
        "agent": "deployer",
        "queue": "q1",
        "created_at": now - timedelta(seconds=80),
    }
    fields.update(kw)
    return Task(**fields)  # type: ignore[arg-type]


def test_progress_shows_status_current_tool_and_elapsed_time() -> None:
    task = _task(status="running", started_at=utcnow() - timedelta(seconds=75), attempt=2)
    text, blocks = render.progress(task, "bash", "http://board/#/tasks/t1")
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "*running* · running `bash`" in shown
    assert "1m 1" in shown  # elapsed since it started: 1m 15s (give or take the test's own time)
    assert "attempt 2" in shown and "<http://board/#/tasks/t1|open on the board>" in shown
    assert text.startswith("running: deployer")


def test_question_buttons_carry_task_and_seq_and_style_approvals() -> None:
    _, blocks = render.question(
        "t1", 7, "Run `rm -rf /tmp/x`?", ["approve", "deny"], "http://board/#/tasks/t1"
    )
    [actions] = [b for b in blocks if b["type"] == "actions"]
    approve, deny = actions["elements"]
    assert json.loads(approve["value"]) == {"t": "t1", "s": 7, "a": "approve"}
    assert approve["style"] == "primary" and deny["style"] == "danger"
    assert len({e["action_id"] for e in actions["elements"]}) == 2  # unique within the block


def test_result_of_a_failure_offers_retry_and_clips_long_output() -> None:
    failed = _task(status="failed", error_code="exit_code", error_message="x" * 10_000, finished_at=utcnow())
    _, blocks = render.result(failed, "http://board/#/tasks/t1")
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert blocks[-1]["elements"][0]["action_id"] == render.RETRY
    done = _task(status="completed", result={"output": "ok"}, finished_at=utcnow())
    _, blocks = render.result(done, "http://board/#/tasks/t1", files=2)
    assert "```ok```" in json.dumps(blocks) and "2 artifacts below" in json.dumps(blocks)
    assert not [b for b in blocks if b["type"] == "actions"]
