"""The audit log over HTTP on a live control plane (SQLite and PostgreSQL): the actions a
key takes show up with its name and surface; admin only; filters, paging, exports; a
refused action records nothing; the pruner runs in the control plane."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx

from tests.audit.helpers import finished_days_ago
from tests.board_api.test_api import problem, seed
from tests.support import LiveServer, wait_for


def _keys(c: httpx.Client) -> dict[str, str]:
    """An admin key (made in open mode, which it closes), then with it an operator and a
    viewer key."""
    out: dict[str, str] = {}
    for scope in ("admin", "operator", "viewer"):
        headers = {"Authorization": f"Bearer {out['admin']}"} if out else {}
        r = c.post("/keys", json={"name": f"{scope}-key", "scopes": [scope]}, headers=headers)
        assert r.status_code == 201, r.text
        out[scope] = r.json()["key"]
    return out


def _as(server: LiveServer, key: str, source: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"}
    if source:
        headers["X-Meta-Agent-Source"] = source
    return server.client(headers=headers)


def test_actions_are_recorded_with_their_actor_admin_only(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)  # open mode: the anonymous admin
        keys = _keys(c)
    with _as(server, keys["operator"], "cli") as op:
        task = op.post("/tasks", json={"agent": "echo", "prompt": "hi", "source": "cli"}).json()
        assert op.post(f"/tasks/{task['id']}/cancel").status_code == 200
        retried = op.post(f"/tasks/{task['id']}/retry").json()
        problem(op.post("/tasks/nope/cancel"), 404, "task_not_found")  # refused: not recorded
        problem(op.post("/tasks", json={"agent": "ghost", "prompt": "x"}), 404, "agent_not_found")
        problem(op.get("/audit"), 403, "insufficient_scope")
        problem(op.get("/audit/export"), 403, "insufficient_scope")
    with _as(server, keys["viewer"]) as viewer:
        problem(viewer.get("/audit"), 403, "insufficient_scope")

    with _as(server, keys["admin"]) as admin:
        assert admin.delete("/worker-queues/q2").status_code == 204
        items = admin.get("/audit", params={"limit": 200}).json()["items"]
        got = [(e["action"], e["actor"], e["actor_kind"], e["source"], e["target_id"]) for e in items]
        assert got[:4] == [
            ("queue.delete", "admin-key", "key", "api", "q2"),
            ("task.retry", "operator-key", "key", "cli", task["id"]),
            ("task.cancel", "operator-key", "key", "cli", task["id"]),
            ("task.create", "operator-key", "key", "cli", task["id"]),
        ]
        assert items[1]["details"] == {"new_task_id": retried["id"]}
        assert items[3]["details"]["agent"] == "echo" and "prompt" not in items[3]["details"]
        made = [e for e in items if e["action"] == "key.create"]
        assert [(e["actor"], e["actor_kind"]) for e in made] == [
            ("admin-key", "key"),
            ("admin-key", "key"),
            ("anonymous", "open"),
        ]
        assert all("key" not in e["details"] for e in made)  # the secret never
        assert not [e for e in items if e["target_id"] in ("nope",) or e["details"].get("agent") == "ghost"]

        f = admin.get("/audit", params={"actor": "operator-key", "action": "task.c*"}).json()["items"]
        assert [e["action"] for e in f] == ["task.cancel", "task.create"]
        f = admin.get("/audit", params={"target_kind": "task", "target_id": task["id"]}).json()["items"]
        assert len(f) == 3
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert admin.get("/audit", params={"since": future}).json()["items"] == []
        page = admin.get("/audit", params={"limit": 2}).json()
        nxt = admin.get("/audit", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [e["id"] for e in page["items"]] + [e["id"] for e in nxt["items"]] == [
            e["id"] for e in items[:4]
        ]

        problem(admin.get("/audit", params={"limit": 201}), 422, "validation_error")
        problem(admin.get("/audit", params={"since": future, "until": "2020-01-01"}), 422, "invalid_range")
        problem(admin.get("/audit", params={"actor": "x" * 201}), 422, "validation_error")


def test_exports_stream_jsonl_and_csv(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        t = c.post("/tasks", json={"agent": "echo", "prompt": "export me"}).json()
        c.post(f"/tasks/{t['id']}/cancel")
        lines = c.get("/audit/export").text.splitlines()
        assert [json.loads(x)["action"] for x in lines][-2:] == ["task.create", "task.cancel"]  # oldest first
        r = c.get("/audit/export", params={"format": "csv", "action": "task.*"})
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
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
        assert [row[5] for row in rows[1:]] == ["task.create", "task.cancel"]
        assert json.loads(rows[1][8])["agent"] == "echo"
        problem(c.get("/audit/export", params={"format": "xml"}), 422, "validation_error")

        r = c.get("/tasks/export", params={"since": "2020-01-01T00:00:00Z"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        (item,) = [json.loads(x) for x in r.text.splitlines()]
        assert item["task"]["id"] == t["id"] and item["task"]["status"] == "cancelled"
        assert [e["seq"] for e in item["events"]] == list(range(1, len(item["events"]) + 1))
        assert c.get("/tasks/export", params={"until": "2020-01-01"}).text == ""
        problem(c.get("/tasks/export", params={"status": "sleeping"}), 422, "invalid_status")
        problem(c.get("/tasks/export", params={"failure": "nope"}), 422, "invalid_failure_class")

        hist = c.get("/tasks/history", params={"since": "2020-01-01", "status": "cancelled"}).json()
        assert [x["id"] for x in hist["items"]] == [t["id"]]
        assert c.get("/tasks/history", params={"status": "completed"}).json()["items"] == []
        assert c.get(f"/tasks/{t['id']}").status_code == 200  # the task routes still answer


def test_the_control_plane_prunes_old_finished_tasks(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url, retention_days=7, retention_interval=0.2)
    with server.client() as c:
        seed(c)
        old = c.post("/tasks", json={"agent": "echo", "prompt": "old"}).json()
        c.post(f"/tasks/{old['id']}/cancel")
        fresh = c.post("/tasks", json={"agent": "echo", "prompt": "fresh"}).json()
        waiting = c.post("/tasks", json={"agent": "echo", "prompt": "pending"}).json()
        c.post(f"/tasks/{fresh['id']}/cancel")
        finished_days_ago(db_url, [old["id"]], 8)

        wait_for(lambda: c.get(f"/tasks/{old['id']}").status_code == 404, 10, "the old task pruned")
        assert c.get(f"/tasks/{fresh['id']}").status_code == 200
        assert c.get(f"/tasks/{waiting['id']}").json()["status"] == "pending"
        (entry,) = c.get("/audit", params={"action": "retention.prune"}).json()["items"]
        assert entry["details"]["tasks"] == 1 and entry["details"]["retention_days"] == 7
        assert entry["actor_kind"] == "system"


def test_edge_times_are_answered_not_crashed_on(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        t = c.post("/tasks", json={"agent": "echo", "prompt": "x"}).json()
        ids = lambda r: [x["id"] for x in r.json()["items"]]  # noqa: E731
        assert ids(c.get("/tasks/history", params={"since": "0001-01-01T00:00:00Z"})) == [t["id"]]
        assert ids(c.get("/tasks/history", params={"until": "9999-12-31T23:59:59Z"})) == [t["id"]]
        problem(c.get("/audit", params={"since": "0001-01-01T00:00:00+01:00"}), 422, "invalid_time")
        problem(c.get("/tasks/export", params={"since": "not a time"}), 422, "validation_error")
        problem(c.get("/tasks/history", params={"cursor": "zz"}), 422, "invalid_cursor")
