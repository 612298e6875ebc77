"""Schedules over HTTP on a live control plane (SQLite and PostgreSQL): create, read, pause,
resume, delete; the ticker firing a due schedule; scopes; bad input as problem+json."""

from __future__ import annotations

import httpx

from tests.board_api.test_api import problem, seed
from tests.schedules.helpers import make_due, schedule_body
from tests.support import LiveServer, wait_for


def scheduled_tasks(c: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    return c.get("/tasks", params={"source": "schedule"}).json()["items"]  # type: ignore[no-any-return]


def test_schedule_lifecycle_and_a_due_run(server: LiveServer, db_url: str) -> None:
    with server.client() as c:
        seed(c)
        r = c.post("/schedules", json=schedule_body(parameters={"env": "prod"}))
        assert r.status_code == 201, r.text
        s = r.json()
        assert (s["cron"], s["timezone"], s["catchup"], s["overlap"], s["paused"]) == (
            "0 8 * * 1-5",
            "Europe/Berlin",
            "once",
            "skip",
            False,
        )
        assert s["next_run_at"] and s["last_run_at"] is None and s["runs"] == 0
        assert [x["name"] for x in c.get("/schedules").json()["items"]] == ["morning"]
        assert c.get(f"/schedules/{s['id']}").json()["name"] == "morning"
        # A task started by hand is not in the schedule filter.
        assert c.post("/tasks", json={"agent": "echo", "prompt": "by hand"}).status_code == 201

        make_due(db_url, "morning")
        (task,) = wait_for(lambda: scheduled_tasks(c), 10, "the scheduled run")
        assert (task["source"], task["schedule_id"], task["agent"], task["queue"]) == (
            "schedule",
            s["id"],
            "echo",
            "q1",
        )
        assert task["prompt"] == "Summarise the night's alerts" and task["parameters"] == {"env": "prod"}
        assert c.get(f"/tasks/{task['id']}").json()["schedule_id"] == s["id"]
        after = c.get("/schedules/morning").json()
        assert after["runs"] == 1 and after["last_task_id"] == task["id"]
        assert after["last_task_status"] == "pending" and after["last_outcome"] == "started"
        assert after["last_run_at"] and after["next_run_at"] > after["last_run_at"]

        paused = c.post("/schedules/morning/pause").json()
        assert paused["paused"] and paused["next_run_at"] is None
        make_due(db_url, "morning")  # paused: a due time set by hand does not fire either
        resumed = c.post("/schedules/morning/resume").json()
        assert not resumed["paused"] and resumed["next_run_at"]
        assert len(scheduled_tasks(c)) == 1

        assert c.delete("/schedules/morning").status_code == 204
        problem(c.get("/schedules/morning"), 404, "schedule_not_found")
        assert c.get(f"/tasks/{task['id']}").json()["schedule_id"] == s["id"]  # the run stays


def test_bad_input_is_a_422_naming_the_field(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        cases = [
            ({"cron": "every morning"}, "invalid_cron", "cron"),
            ({"cron": "0 8 * * * *"}, "invalid_cron", "cron"),
            ({"timezone": "Europe/Atlantis"}, "invalid_timezone", "timezone"),
            ({"agent": "ghost"}, "unknown_agent", "agent"),
            ({"queue": "nowhere"}, "unknown_queue", "queue"),
        ]
        for kw, code, field in cases:
            body = problem(c.post("/schedules", json=schedule_body(**kw)), 422, code)
            assert body["field"] == field and str(kw[field]) in body["detail"]
        for kw, field in (({"catchup": "twice"}, "catchup"), ({"overlap": "often"}, "overlap")):
            body = problem(c.post("/schedules", json=schedule_body(**kw)), 422, "validation_error")
            assert [e["field"] for e in body["errors"]] == [field]
        body = problem(c.post("/schedules", json=schedule_body(cron="x" * 121)), 422, "validation_error")
        assert body["errors"][0]["field"] == "cron"
        problem(c.post("/schedules", json=schedule_body(name="Bad Name")), 422, "invalid_name")
        assert c.post("/schedules", json=schedule_body()).status_code == 201
        problem(c.post("/schedules", json=schedule_body()), 409, "schedule_exists")
        problem(c.post("/schedules/nope/pause"), 404, "schedule_not_found")
        problem(c.get("/schedules", params={"limit": 500}), 422, "validation_error")
        problem(c.get("/schedules", params={"cursor": "%%%"}), 422, "invalid_cursor")
        assert c.get("/schedules").json()["items"][0]["name"] == "morning"


def test_viewers_read_and_operators_change(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"authorization": f"Bearer {admin}"}) as a:
        keys = {
            s: a.post("/keys", json={"name": s, "scopes": [s]}).json()["key"] for s in ("viewer", "operator")
        }
        assert a.post("/schedules", json=schedule_body("by-admin")).status_code == 201
    with server.client(headers={"authorization": f"Bearer {keys['viewer']}"}) as v:
        assert [x["name"] for x in v.get("/schedules").json()["items"]] == ["by-admin"]
        assert v.get("/schedules/by-admin").status_code == 200
        problem(v.post("/schedules", json=schedule_body("by-viewer")), 403, "insufficient_scope")
        problem(v.post("/schedules/by-admin/pause"), 403, "insufficient_scope")
        problem(v.delete("/schedules/by-admin"), 403, "insufficient_scope")
    with server.client(headers={"authorization": f"Bearer {keys['operator']}"}) as o:
        made = o.post("/schedules", json=schedule_body("by-operator"))
        assert made.status_code == 201 and made.json()["created_by"] == "operator"
        assert o.post("/schedules/by-admin/pause").json()["paused"] is True
        assert o.delete("/schedules/by-operator").status_code == 204
    with server.client() as anon:
        problem(anon.get("/schedules"), 401, "unauthorized")
