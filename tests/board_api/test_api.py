"""The REST API over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.support import LiveServer


def problem(r: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    return body  # type: ignore[no-any-return]


def seed(c: httpx.Client) -> None:
    assert c.post("/worker-queues", json={"name": "q1", "description": "first"}).status_code == 201
    assert c.post("/worker-queues", json={"name": "q2"}).status_code == 201
    r = c.post(
        "/agents", json={"name": "echo", "runtime": "noop", "description": "Echoes", "default_queue": "q1"}
    )
    assert r.status_code == 201, r.text


def claim(c: httpx.Client, queue: str = "q1", worker: str = "w1", n: int = 1, wait: float = 0) -> list[dict]:  # type: ignore[type-arg]
    r = c.post(
        f"/worker-queues/{queue}/claim", json={"worker_id": worker, "max_tasks": n, "wait_seconds": wait}
    )
    assert r.status_code == 200, r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


def test_task_lifecycle_over_http(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        r = c.post("/agents/echo/execute", json={"prompt": "hello", "parameters": {"a": 1}})
        assert r.status_code == 201, r.text
        out = r.json()
        tid = out["execution_id"]
        assert out["status"] == "pending" and out["task"]["queue"] == "q1"
        (item,) = claim(c)
        token = item["token"]
        assert item["task"]["id"] == tid and item["agent"]["name"] == "echo" and item["task"]["attempt"] == 1
        r = c.post(
            f"/tasks/{tid}/events",
            json={"token": token, "events": [{"kind": "log", "data": {"line": "x"}}], "phase": "executing"},
        )
        assert r.json() == {"last_seq": 3, "cancel_requested": False}
        assert c.get(f"/tasks/{tid}").json()["phase"] == "executing"
        bad = c.post(
            f"/tasks/{tid}/events", json={"token": token, "events": [{"kind": "log"}], "phase": "dreaming"}
        )
        problem(bad, 422, "validation_error")
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.5}
        r = c.post(
            f"/tasks/{tid}/complete", json={"token": token, "result": {"output": "hello"}, "usage": usage}
        )
        assert r.status_code == 200 and r.json()["status"] == "completed"
        problem(c.post(f"/tasks/{tid}/complete", json={"token": token, "result": None}), 409, "stale_lease")
        ev = c.get(f"/tasks/{tid}/events").json()
        assert [e["seq"] for e in ev["items"]] == [1, 2, 3, 4] and ev["status"] == "completed"
        task = c.get(f"/tasks/{tid}").json()
        assert task["result"] == {"output": "hello"} and task["usage"] == usage
        metrics = httpx.get(server.url + "/metrics").text
        assert 'meta_agent_llm_tokens_total{agent="echo",kind="prompt"} 3.0' in metrics
        assert 'meta_agent_llm_cost_usd_total{agent="echo"} 0.5' in metrics
        assert 'meta_agent_task_duration_seconds_count{status="completed"} 1.0' in metrics
        assert task["duration_seconds"] is not None and task["error"] is None


def test_list_filters_and_cursor_pagination(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = [
            c.post(
                "/tasks", json={"agent": "echo", "prompt": f"job {i}", "queue": "q2" if i % 2 else "q1"}
            ).json()["id"]
            for i in range(7)
        ]
        c.post(f"/tasks/{ids[0]}/cancel")
        page1 = c.get("/tasks", params={"limit": 3}).json()
        page2 = c.get("/tasks", params={"limit": 3, "cursor": page1["next_cursor"]}).json()
        page3 = c.get("/tasks", params={"limit": 3, "cursor": page2["next_cursor"]}).json()
        seen = [t["id"] for p in (page1, page2, page3) for t in p["items"]]
        assert seen == list(reversed(ids)) and page3["next_cursor"] is None
        assert {t["id"] for t in c.get("/tasks", params={"queue": "q2"}).json()["items"]} == set(ids[1::2])
        assert [t["id"] for t in c.get("/tasks", params={"status": "cancelled"}).json()["items"]] == [ids[0]]
        assert len(c.get("/tasks", params={"status": "pending,cancelled"}).json()["items"]) == 7
        assert [t["id"] for t in c.get("/tasks", params={"q": "JOB 3"}).json()["items"]] == [ids[3]]
        assert c.get("/tasks", params={"type": "team"}).json()["items"] == []
        assert len(c.get("/tasks", params={"source": "api", "agent": "echo"}).json()["items"]) == 7
        board = c.get("/board").json()["columns"]
        assert board["pending"]["count"] == 6 and board["cancelled"]["count"] == 1
        queues = {q["name"]: q for q in c.get("/worker-queues").json()["items"]}
        assert queues["q1"]["pending_tasks"] == 3 and queues["q2"]["pending_tasks"] == 3


def test_bad_input_gets_problem_json_and_changes_nothing(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "keep me"}).json()["id"]
        problem(c.post("/tasks", json={"agent": "ghost", "prompt": "x"}), 404, "agent_not_found")
        problem(
            c.post("/tasks", json={"agent": "echo", "queue": "ghost", "prompt": "x"}), 404, "queue_not_found"
        )
        problem(
            c.post(
                "/tasks",
                content=b'{"agent": "echo", "prompt": ',
                headers={"content-type": "application/json"},
            ),
            400,
            "malformed_json",
        )
        body = problem(c.post("/tasks", json={"agent": "echo", "prompt": 42}), 422, "validation_error")
        assert "prompt" in body["detail"]
        problem(c.post("/tasks", json={"agent": "echo", "prompt": "x" * 100_001}), 422, "prompt_too_long")
        problem(c.post("/tasks", json={"agent": "echo", "prompt": "x", "bogus": 1}), 422, "validation_error")
        problem(c.get("/tasks", params={"status": "sleeping"}), 422, "invalid_status")
        problem(c.get("/tasks", params={"limit": 0}), 422, "invalid_limit")
        problem(c.get("/tasks", params={"cursor": "!!"}), 422, "invalid_cursor")
        problem(c.get("/tasks/nope"), 404, "task_not_found")
        problem(c.post(f"/tasks/{tid}/input", json={"answer": "x"}), 409, "not_waiting_for_input")
        problem(c.post(f"/tasks/{tid}/retry"), 409, "invalid_transition")
        problem(c.post(f"/tasks/{tid}/complete", json={"token": "1", "result": 1}), 409, "stale_lease")
        problem(
            c.post(f"/tasks/{tid}/events", json={"token": "1", "events": [{"kind": "status", "data": {}}]}),
            422,
            "reserved_event_kind",
        )
        problem(c.post("/agents", json={"name": "Bad Name", "runtime": "noop"}), 422, "invalid_name")
        problem(c.post("/agents", json={"name": "echo", "runtime": "noop"}), 409, "name_taken")
        problem(c.post("/agents", json={"name": "cmd", "runtime": "command"}), 422, "missing_command")
        problem(
            c.post("/tasks", content=b"x" * 3_000_000, headers={"content-type": "application/json"}),
            413,
            "payload_too_large",
        )
        problem(c.post("/worker-queues/ghost/claim", json={"worker_id": "w"}), 404, "queue_not_found")
        problem(c.get("/nowhere"), 404, "not_found")
        (only,) = c.get("/tasks").json()["items"]
        assert only["id"] == tid and only["status"] == "pending" and only["last_seq"] == 1


def test_requires_input_answer_resumes(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "deploy"}).json()["id"]
        (item,) = claim(c)
        r = c.post(
            f"/tasks/{tid}/request-input",
            json={"token": item["token"], "question": "Which env?", "choices": ["dev", "prod"], "key": "env"},
        )
        assert r.json()["status"] == "requires_input" and r.json()["pending_input"]["choices"] == [
            "dev",
            "prod",
        ]
        assert c.get(f"/tasks/{tid}").json()["worker_id"] is None
        r = c.post(f"/tasks/{tid}/input", json={"answer": "prod"})
        assert r.json()["status"] == "pending"
        (again,) = claim(c, worker="w2")
        assert again["task"]["inputs"] == {"env": "prod"} and again["task"]["attempt"] == 2
        assert again["token"] != item["token"]
        assert (
            c.post(f"/tasks/{tid}/complete", json={"token": again["token"], "result": "ok"}).json()["status"]
            == "completed"
        )


def test_retry_and_cancel_over_http(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        assert c.post(f"/tasks/{tid}/cancel").json()["status"] == "cancelled"
        r = c.post(f"/tasks/{tid}/retry")
        assert r.status_code == 201 and r.json()["retry_of"] == tid and r.json()["status"] == "pending"
        again = c.post(f"/tasks/{r.json()['id']}/cancel").json()
        r = c.post(f"/tasks/{again['id']}/retry", json={"source": "slack", "requested_by": "U42"})
        assert (r.json()["source"], r.json()["requested_by"], r.json()["retry_of"]) == (
            "slack",
            "U42",
            again["id"],
        )
        problem(c.post(f"/tasks/{tid}/retry", json={"source": "carrier-pigeon"}), 422, "invalid_source")


def test_artifacts_round_trip(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        (item,) = claim(c)
        r = c.put(
            f"/tasks/{tid}/artifacts/report.txt",
            content=b"hello\n",
            headers={"content-type": "text/plain", "X-Lease-Token": item["token"]},
        )
        assert r.status_code == 201 and r.json()["size"] == 6
        problem(
            c.put(f"/tasks/{tid}/artifacts/a%5Cb", headers={"X-Lease-Token": item["token"]}, content=b"x"),
            422,
            "invalid_artifact_name",
        )
        assert [a["name"] for a in c.get(f"/tasks/{tid}/artifacts").json()["items"]] == ["report.txt"]
        r = c.get(f"/tasks/{tid}/artifacts/report.txt")
        assert r.content == b"hello\n" and r.headers["content-type"].startswith("text/plain")
        problem(c.get(f"/tasks/{tid}/artifacts/none.txt"), 404, "artifact_not_found")


def test_ops_endpoints(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/readyz").status_code == 200
        m = c.get("/metrics").text
        assert 'meta_agent_tasks{status="pending"} 0.0' in m and "meta_agent_dispatch_seconds_bucket" in m
        spec = c.get("/openapi.json").json()
        assert (
            "/api/v1/tasks/{task_id}/stream" in spec["paths"]
            and "/api/v1/worker-queues/{queue}/claim" in spec["paths"]
        )
        assert "Task Kanban" in c.get("/").text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_keys_and_scopes(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
        viewer = c.post(
            "/keys", json={"name": "eyes", "scopes": ["viewer"]}, headers={"authorization": f"Bearer {admin}"}
        ).json()["key"]
    server.app.state.key_cache.invalidate()
    with (
        server.client() as anon,
        server.client(headers={"authorization": f"Bearer {viewer}"}) as v,
        server.client(headers={"authorization": f"Bearer {admin}"}) as a,
    ):
        problem(anon.get("/tasks"), 401, "unauthorized")
        problem(anon.get("/tasks", headers={"authorization": "Bearer ma_x_y"}), 401, "invalid_key")
        assert v.get("/tasks").status_code == 200
        problem(v.post("/tasks", json={"agent": "echo", "prompt": "x"}), 403, "insufficient_scope")
        problem(v.post("/worker-queues/q1/claim", json={"worker_id": "w"}), 403, "insufficient_scope")
        r = a.post("/tasks", json={"agent": "echo", "prompt": "x"})
        assert r.status_code == 201 and r.json()["requested_by"] == "root"
        keys = a.get("/keys").json()["items"]
        assert {k["name"] for k in keys} == {"root", "eyes"} and all(k["key"] is None for k in keys)
        eyes = next(k for k in keys if k["name"] == "eyes")
        assert a.delete(f"/keys/{eyes['id']}").json()["revoked_at"]
        problem(v.get("/tasks"), 401, "invalid_key")


def test_an_integer_past_64_bits_is_a_422_not_a_500(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        big = 2**63
        r = c.post("/workers/w1/heartbeat", json={"queue": "q1", "running": big})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        r = c.post("/agents", json={"name": "big", "runtime": "noop", "policy": {"max_steps": big}})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        r = c.get("/tasks", params={"limit": big})
        assert r.status_code == 422, r.text
        assert c.get("/agents/big").status_code == 404
