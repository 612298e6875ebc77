"""`meta-agent audit list|export` and `execution export` against a live control plane
(SQLite and PostgreSQL): --json, an export to a file, the CSV header, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.board_api.test_api import seed
from tests.cli.test_cli_standin import run
from tests.support import LiveServer


def test_audit_list_and_exports(server: LiveServer, tmp_path: Path) -> None:
    with server.client() as c:
        seed(c)
    url = server.url
    made = run(None, "exec", "agent", "echo", "hello", "--json", url=url)
    assert made.exit_code == 0, made.output
    task_id = json.loads(made.stdout)["id"]
    assert run(None, "execution", "cancel", task_id, "--json", url=url).exit_code == 0

    listed = run(None, "audit", "list", "--action", "task.*", "--json", url=url)
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.stdout)
    assert [(e["action"], e["target_id"]) for e in page["items"]] == [
        ("task.cancel", task_id),
        ("task.create", task_id),
    ]
    assert page["items"][0]["source"] == "cli" and page["items"][0]["actor_kind"] == "open"
    human = run(None, "audit", "list", "--target", task_id, url=url)
    assert human.exit_code == 0 and "task.cancel" in human.stdout and "anonymous" in human.stdout

    out = tmp_path / "audit.csv"
    exported = run(
        None, "audit", "export", "--since", "2020-01-01", "--format", "csv", "--out", str(out), url=url
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == [
        "id",
        "at",
        "actor",
        "actor_kind",
        "source",
        "action",
        "target_kind",
        "target_id",
        "details",
    ]
    assert [r[5] for r in rows[1:]][-2:] == ["task.create", "task.cancel"]
    assert f"exported {len(rows) - 1} entries to {out}" in exported.stderr

    jsonl = tmp_path / "audit.jsonl"
    summary = run(None, "audit", "export", "--action", "queue.*", "-o", str(jsonl), "--json", url=url)
    assert json.loads(summary.stdout) == {"exported": 2, "format": "jsonl", "out": str(jsonl)}
    assert [json.loads(x)["target_id"] for x in jsonl.read_text().splitlines()] == ["q1", "q2"]

    to_stdout = run(None, "execution", "export", "--since", "2020-01-01", "--until", "2100-01-01", url=url)
    assert to_stdout.exit_code == 0, to_stdout.output
    (item,) = [json.loads(x) for x in to_stdout.stdout.splitlines()]
    assert item["task"]["id"] == task_id and item["events"][-1]["kind"] == "status"
    assert "exported 1 executions" in to_stdout.stderr

    bad = run(None, "audit", "export", "--since", "last tuesday", url=url)
    assert bad.exit_code == 2 and "not an ISO 8601 date" in bad.output
    bad = run(None, "execution", "export", "--status", "sleeping", url=url)
    assert bad.exit_code == 1 and "invalid_status" in bad.stderr
    bad = run(None, "audit", "export", "--format", "xml", url=url)
    assert bad.exit_code == 2
