"""Worker keys act only where they hold the lease: another worker's key, a guessed token, a
forged parent or a queue the key is not bound to change nothing (issue 12 item 3)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.board_api.test_api import problem, seed
from tests.support import LiveServer


def keyed(server: LiveServer) -> dict[str, httpx.Client]:
    """Clients for an admin key and two worker keys (a second worker is the attacker)."""
    with server.client() as c:
        seed(c)
        admin = c.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
    out = {"admin": server.client(headers={"Authorization": f"Bearer {admin}"})}
    for name in ("w1", "w2"):
        key = out["admin"].post("/keys", json={"name": name, "scopes": ["worker"]}).json()["key"]
        out[name] = server.client(headers={"Authorization": f"Bearer {key}"})
    return out


def claim(c: httpx.Client, queue: str = "q1", worker: str = "w1") -> dict[str, Any]:
    r = c.post(f"/worker-queues/{queue}/claim", json={"worker_id": worker, "wait_seconds": 0})
    assert r.status_code == 200, r.text
    (item,) = r.json()["tasks"]
    return item  # type: ignore[no-any-return]


def test_another_workers_key_cannot_act_on_a_claimed_task(server: LiveServer) -> None:
    cs = keyed(server)
    admin, w1, w2 = cs["admin"], cs["w1"], cs["w2"]
    tid = admin.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
    item = claim(w1)
    token = item["token"]
    assert isinstance(token, str) and len(token) >= 40 and item["task"]["attempt"] == 1
    # The attempt number (the old token), an empty-looking one and a long random one.
    for guess in ("1", "0", "x" * 43):
        calls = [
            w2.post(f"/tasks/{tid}/complete", json={"token": guess, "result": "forged"}),
            w2.post(f"/tasks/{tid}/heartbeat", json={"token": guess}),
            w2.post(f"/tasks/{tid}/checkpoint", json={"token": guess, "checkpoint": {"forged": True}}),
            w2.post(f"/tasks/{tid}/events", json={"token": guess, "events": [{"kind": "log", "data": {}}]}),
            w2.post(f"/tasks/{tid}/fail", json={"token": guess, "error": {"code": "x", "message": "y"}}),
            w2.post(f"/tasks/{tid}/release", json={"token": guess}),
            w2.post(f"/tasks/{tid}/request-input", json={"token": guess, "question": "?"}),
            w2.put(f"/tasks/{tid}/artifacts/a.txt", content=b"forged", headers={"X-Lease-Token": guess}),
        ]
        for r in calls:
            body = problem(r, 409, "stale_lease")
            assert token not in r.text and body["status_now"] == "running"
    r = w2.post("/workers/w2/heartbeat", json={"queue": "q1", "tasks": [{"id": tid, "token": "1"}]})
    assert r.json()["lost"] == [tid]
    # The old query-string token is not read any more.
    problem(
        w1.put(f"/tasks/{tid}/artifacts/a.txt", params={"token": token}, content=b"x"),
        422,
        "validation_error",
    )
    task = admin.get(f"/tasks/{tid}")
    events = admin.get(f"/tasks/{tid}/events")
    assert token not in task.text and token not in events.text
    t = task.json()
    assert (t["status"], t["last_seq"], t["result"]) == ("running", 2, None)
    assert admin.get(f"/tasks/{tid}/artifacts").json()["items"] == []
    # The holder's calls still work, the artifact in a header; a re-claim gets a new token.
    assert w1.post(f"/tasks/{tid}/heartbeat", json={"token": token}).status_code == 200
    r = w1.put(f"/tasks/{tid}/artifacts/a.txt", content=b"real", headers={"X-Lease-Token": token})
    assert r.status_code == 201, r.text
    assert w1.post(f"/tasks/{tid}/release", json={"token": token}).json()["status"] == "pending"
    again = claim(w2, worker="w2")
    assert again["token"] != token
    problem(w1.post(f"/tasks/{tid}/complete", json={"token": token, "result": "late"}), 409, "stale_lease")
    done = w2.post(f"/tasks/{tid}/complete", json={"token": again["token"], "result": "ok"}).json()
    assert done["status"] == "completed" and done["result"] == "ok"
    for c in cs.values():
        c.close()


def test_child_tasks_need_the_parents_lease_and_stay_in_its_team(server: LiveServer) -> None:
    cs = keyed(server)
    admin, w1, w2 = cs["admin"], cs["w1"], cs["w2"]
    for name in ("coord", "member", "outsider"):
        assert (
            admin.post("/agents", json={"name": name, "runtime": "noop", "default_queue": "q2"}).status_code
            == 201
        )
    team = {"name": "crew", "coordinator": "coord", "members": ["member"], "default_queue": "q1"}
    assert admin.post("/teams", json=team).status_code == 201, team
    solo = admin.post("/tasks", json={"agent": "echo", "prompt": "solo"}).json()["id"]
    lead = admin.post("/tasks", json={"team": "crew", "prompt": "lead", "requested_by": "alice"}).json()["id"]
    solo_token = claim(w1)["token"]
    item = claim(w1)
    assert item["task"]["id"] == lead
    lead_token = item["token"]
    child = {"agent": "member", "prompt": "part", "parent_id": lead}
    # No lease; another worker's guess; the lease of another task; a task that is not a
    # team's; a non-member; a queue of its own choosing; a team instead of a member.
    problem(w2.post("/tasks", json=child), 403, "insufficient_scope")
    problem(w2.post("/tasks", json=child, headers={"X-Lease-Token": "1"}), 409, "stale_lease")
    problem(w1.post("/tasks", json=child, headers={"X-Lease-Token": solo_token}), 409, "stale_lease")
    with_solo = {**child, "parent_id": solo}
    problem(
        w1.post("/tasks", json=with_solo, headers={"X-Lease-Token": solo_token}),
        403,
        "delegation_not_allowed",
    )
    lease = {"X-Lease-Token": lead_token}
    for bad in ({"agent": "outsider"}, {"queue": "q1"}, {"agent": None, "team": "crew"}):
        problem(w1.post("/tasks", json={**child, **bad}, headers=lease), 403, "delegation_not_allowed")
    problem(w2.post("/tasks", json={"agent": "echo", "prompt": "free"}), 403, "insufficient_scope")
    assert admin.get("/tasks", params={"status": "pending"}).json()["items"] == []
    # The holder delegates to a member, on behalf of whoever asked for the parent.
    r = w1.post("/tasks", json={**child, "requested_by": "mallory"}, headers=lease)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["parent_id"], made["requested_by"], made["queue"]) == (lead, "alice", "q2")
    # Passing an answer on to the child needs the same lease.
    member = claim(w2, queue="q2", worker="w2")
    ask = {"token": member["token"], "question": "Which?"}
    assert w2.post(f"/tasks/{made['id']}/request-input", json=ask).status_code == 200
    problem(w2.post(f"/tasks/{made['id']}/input", json={"answer": "x"}), 403, "insufficient_scope")
    answer = w2.post(f"/tasks/{made['id']}/input", json={"answer": "x"}, headers={"X-Lease-Token": "1"})
    problem(answer, 409, "stale_lease")
    answer = w1.post(f"/tasks/{made['id']}/input", json={"answer": "this"}, headers=lease)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    for c in cs.values():
        c.close()


def test_a_queue_bound_worker_key_is_refused_elsewhere(server: LiveServer) -> None:
    cs = keyed(server)
    admin, w1 = cs["admin"], cs["w1"]
    r = admin.post("/keys", json={"name": "bound", "scopes": ["worker"], "queues": ["q1"]})
    assert r.status_code == 201 and r.json()["queues"] == ["q1"]
    bound = server.client(headers={"Authorization": f"Bearer {r.json()['key']}"})
    listed = {k["name"]: k["queues"] for k in admin.get("/keys").json()["items"]}
    assert listed["bound"] == ["q1"] and listed["w1"] == []
    problem(
        admin.post("/keys", json={"name": "x", "scopes": ["operator"], "queues": ["q1"]}),
        422,
        "invalid_scope",
    )
    problem(
        bound.post("/worker-queues/q2/claim", json={"worker_id": "b", "wait_seconds": 0}),
        403,
        "queue_not_allowed",
    )
    tid = admin.post("/tasks", json={"agent": "echo", "prompt": "p", "queue": "q2"}).json()["id"]
    token = claim(w1, queue="q2")["token"]
    # Even with the lease token in hand (leaked, or passed on), the bound key cannot act on q2.
    for r in (
        bound.post(f"/tasks/{tid}/complete", json={"token": token, "result": "x"}),
        bound.post(f"/tasks/{tid}/events", json={"token": token, "events": [{"kind": "log", "data": {}}]}),
        bound.post(f"/tasks/{tid}/heartbeat", json={"token": token}),
        bound.put(f"/tasks/{tid}/artifacts/a", content=b"x", headers={"X-Lease-Token": token}),
    ):
        problem(r, 403, "queue_not_allowed")
    hb = bound.post("/workers/b/heartbeat", json={"queue": "q1", "tasks": [{"id": tid, "token": token}]})
    assert hb.json()["lost"] == [tid]
    assert admin.get(f"/tasks/{tid}").json()["last_seq"] == 2
    admin.post("/tasks", json={"agent": "echo", "prompt": "here"})
    item = claim(bound, queue="q1", worker="b")
    r = bound.post(f"/tasks/{item['task']['id']}/complete", json={"token": item["token"], "result": 1})
    assert r.status_code == 200, r.text
    bound.close()
    for c in cs.values():
        c.close()
