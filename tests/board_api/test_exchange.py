"""`POST /worker-queues/{queue}/exchange`: a worker reports finished tasks and claims more in
one call (complete-and-claim-next). Each report stands alone: a stale one is refused and
writes nothing while the others commit; everything is committed before the answer."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from board_api import hotroutes
from board_api.state import state_of
from sdk.schemas import ClaimBody
from store import catalog
from store.db import sync_url
from store.handoff import handoffs
from store.peers import WARM_UP
from tests.board_api.test_api import claim, problem, seed
from tests.board_api.test_worker_fencing import keyed
from tests.support import LiveServer, wait_for


def exchange(c: httpx.Client, reports: list[dict[str, Any]], n: int = 1, wait: float = 0, **kw: Any) -> Any:
    body = {"worker_id": "w1", "reports": reports, "max_tasks": n, "wait_seconds": wait, **kw}
    r = c.post("/worker-queues/q1/exchange", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_reports_and_the_next_claim_go_in_one_call(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(4)]
        a, b = claim(c, n=2)
        events = [{"kind": "log", "data": {"line": "done"}}]
        ok = {"id": a["task"]["id"], "token": a["token"], "result": {"output": "A"}, "usage": {"tokens": 2}}
        error = {"code": "tool_error", "message": "boom"}
        bad = {"id": b["task"]["id"], "token": b["token"], "error": error, "events": events}
        out = exchange(c, [ok, bad], n=2)
        assert out["reports"] == [
            {"id": a["task"]["id"], "status": "completed", "problem": None},
            {"id": b["task"]["id"], "status": "failed", "problem": None},
        ]
        assert sorted(t["task"]["id"] for t in out["tasks"]) == ids[2:]
        assert all(t["task"]["status"] == "running" and t["token"] for t in out["tasks"])
        done = c.get(f"/tasks/{a['task']['id']}").json()
        assert (done["status"], done["result"], done["usage"]) == (
            "completed",
            {"output": "A"},
            {"tokens": 2},
        )
        failed = c.get(f"/tasks/{b['task']['id']}").json()
        assert (failed["status"], failed["error"]["code"]) == ("failed", "tool_error")
        kinds = [e["kind"] for e in c.get(f"/tasks/{b['task']['id']}/events").json()["items"]]
        assert kinds == ["status", "status", "log", "status"]
        # Nothing left to claim and nothing to report: it long-polls like `claim` ...
        assert exchange(c, [], wait=0) == {"reports": [], "tasks": []}
        # ... and a report answers at once even with nothing to claim.
        (x,) = [t for t in out["tasks"] if t["task"]["id"] == ids[2]]
        assert exchange(c, [{"id": ids[2], "token": x["token"], "result": 1}], wait=30)["tasks"] == []


def test_a_stale_report_is_refused_alone_and_writes_nothing(server: LiveServer) -> None:
    cs = keyed(server)
    admin, w1, w2 = cs["admin"], cs["w1"], cs["w2"]
    t1 = admin.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
    t2 = admin.post("/tasks", json={"agent": "echo", "prompt": "q"}).json()["id"]
    (i1, i2) = claim(w1, n=2)
    forged = {"id": t1, "token": "1", "result": "forged"}
    out = exchange(w2, [forged, {"id": t2, "token": i2["token"], "result": "ok"}], n=0)
    (refused, applied) = out["reports"]
    assert refused["status"] is None and refused["problem"]["status"] == 409
    assert refused["problem"]["code"] == "stale_lease" and i1["token"] not in str(out)
    assert applied == {"id": t2, "status": "completed", "problem": None}
    t = admin.get(f"/tasks/{t1}").json()
    assert (t["status"], t["result"], t["last_seq"]) == ("running", None, 2)
    # A report sent twice (its answer lost) is refused the second time, not applied twice.
    again = exchange(w1, [{"id": t2, "token": i2["token"], "result": "twice"}], n=0)
    assert again["reports"][0]["problem"]["code"] == "stale_lease"
    assert admin.get(f"/tasks/{t2}").json()["result"] == "ok"
    # A bad event kind refuses that report only.
    bad = exchange(w1, [{"id": t1, "token": i1["token"], "result": 1, "events": [{"kind": "status"}]}], n=0)
    assert bad["reports"][0]["problem"]["status"] == 422
    assert admin.get(f"/tasks/{t1}").json()["status"] == "running"
    for c in cs.values():
        c.close()


def refusals(server: LiveServer, route: str, bad_bodies: list[dict[str, Any]]) -> None:
    """A worker call's refusals: another queue's key 403, a viewer 403, bad bodies 422, an
    unknown queue 404, each as FastAPI's route gives it."""
    with server.client() as c:
        admin = c.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {admin}"}) as a:
        key = a.post("/keys", json={"name": "bound", "scopes": ["worker"], "queues": ["q2"]}).json()["key"]
        with server.client(headers={"Authorization": f"Bearer {key}"}) as w:
            problem(w.post(f"/worker-queues/q1/{route}", json={"worker_id": "w"}), 403, "queue_not_allowed")
        viewer = a.post("/keys", json={"name": "eyes", "scopes": ["viewer"]}).json()["key"]
        with server.client(headers={"Authorization": f"Bearer {viewer}"}) as v:
            body = {"worker_id": "w", "wait_seconds": 0}
            problem(v.post(f"/worker-queues/q1/{route}", json=body), 403, "insufficient_scope")
        for body in bad_bodies:
            problem(a.post(f"/worker-queues/q1/{route}", json=body), 422, "validation_error")
        r = a.post(f"/worker-queues/nope/{route}", json={"worker_id": "w", "wait_seconds": 0})
        problem(r, 404, "queue_not_found")


def test_a_queue_bound_key_cannot_exchange_elsewhere_and_bad_bodies_are_422(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
    too_many = [{"id": f"t{i}", "token": "x"} for i in range(101)]
    refusals(
        server,
        "exchange",
        [
            {"worker_id": "w", "reports": too_many},
            {"worker_id": "w", "max_tasks": 101},
            {"worker_id": "w", "reports": [{"id": "t", "token": "x", "extra": 1}]},
        ],
    )


def test_a_claim_is_a_hot_route_and_answers_like_fastapi(server: LiveServer) -> None:
    """`POST /worker-queues/{queue}/claim` (the SDK's `claim`, an idle worker's long-poll) is
    served by board_api/hotroutes.py like `exchange`: FastAPI's routing and dependency
    solving were ~15% of the server's time in a dispatch; each refusal keeps its shape."""
    scope = {"type": "http", "method": "POST", "path": "/api/v1/worker-queues/q1/claim"}
    route = hotroutes._route(scope)
    assert route is not None and route[0] is ClaimBody and route[2] == "q1"
    for odd in ("/api/v1/worker-queues//claim", "/api/v1/worker-queues/a/b/claim"):
        assert hotroutes._route({**scope, "path": odd}) is None
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        assert [t["task"]["id"] for t in claim(c)] == [tid]
        assert claim(c) == []
    refusals(server, "claim", [{"worker_id": "w", "max_tasks": 101}, {"worker_id": "w", "extra": 1}, {}])


def test_a_parked_exchange_answers_when_a_task_arrives(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        got: dict[str, Any] = {}

        def park() -> None:
            with server.client() as w:
                got.update(exchange(w, [], wait=30))

        t = threading.Thread(target=park)
        t.start()
        # The create's notification wakes the parked exchange; no sleep decides the order: a
        # create before the park is claimed at once, after it by the wake-up.
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        t.join(20)
        assert not t.is_alive()
        assert [x["task"]["id"] for x in got["tasks"]] == [tid]


@pytest.mark.parametrize("route", ["claim", "exchange"])
def test_a_task_created_for_a_parked_worker_is_claimed_by_its_creation(
    server: LiveServer, route: str
) -> None:
    """The create's own transaction claims for the worker parked on its queue
    (store/handoff.py), through either creating route: the worker is answered after that one
    commit instead of after a wake-up and a claim of its own."""
    db = state_of(server.app).db
    with server.client() as c:
        seed(c)
        for create in (
            lambda: c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"],
            lambda: c.post("/agents/echo/execute", json={"prompt": "p"}).json()["execution_id"],
        ):
            got: dict[str, Any] = {}

            def park(got: dict[str, Any] = got) -> None:
                with server.client() as w:
                    got["tasks"] = (
                        claim(w, wait=30) if route == "claim" else exchange(w, [], wait=30)["tasks"]
                    )

            handed = handoffs(db).handed
            t = threading.Thread(target=park)
            t.start()
            wait_for(lambda: handoffs(db).parked("q1"), 10, "the worker's claim to park")
            tid = create()
            t.join(20)
            assert not t.is_alive()
            assert [x["task"]["id"] for x in got["tasks"]] == [tid]
            assert handoffs(db).handed == handed + 1
            assert c.get(f"/tasks/{tid}").json()["status"] == "running"


def test_events_served_by_the_fast_route_answer_like_fastapi(server: LiveServer) -> None:
    """`POST /tasks/{id}/events` is a hot route (board_api/hotroutes.py): each refusal keeps
    the shape and status FastAPI's route gives."""
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        (item,) = claim(c)
        token = item["token"]
        ok = c.post(
            f"/tasks/{tid}/events", json={"token": token, "events": [{"kind": "log", "data": {"x": 1}}]}
        )
        assert ok.status_code == 200 and ok.json() == {"last_seq": 3, "cancel_requested": False}
        problem(
            c.post(f"/tasks/{tid}/events", json={"token": "wrong", "events": [{"kind": "log"}]}),
            409,
            "stale_lease",
        )
        reserved = {"token": token, "events": [{"kind": "status", "data": {}}]}
        problem(c.post(f"/tasks/{tid}/events", json=reserved), 422, "reserved_event_kind")
        problem(
            c.post(f"/tasks/{tid}/events", json={"token": token, "events": "nope"}), 422, "validation_error"
        )
        problem(
            c.post("/tasks/nope/events", json={"token": token, "events": [{"kind": "log"}]}),
            404,
            "task_not_found",
        )
        admin = c.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {admin}"}) as a:
        viewer = a.post("/keys", json={"name": "eyes", "scopes": ["viewer"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {viewer}"}) as v:
        body = {"token": token, "events": [{"kind": "log"}]}
        problem(v.post(f"/tasks/{tid}/events", json=body), 403, "insufficient_scope")


def test_several_tasks_events_go_in_one_call_each_answered_alone(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(2)]
        items = claim(c, n=2)
        tokens = {i["task"]["id"]: i["token"] for i in items}
        body = {
            "items": [
                {"id": ids[0], "token": tokens[ids[0]], "events": [{"kind": "log", "data": {"n": 1}}] * 3},
                {"id": ids[1], "token": "not-the-lease", "events": [{"kind": "log", "data": {"n": 2}}]},
                {"id": ids[1], "token": tokens[ids[1]], "events": [{"kind": "log"}], "phase": "executing"},
            ]
        }
        r = c.post("/worker-queues/q1/events", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["items"]
        assert out[0] == {"id": ids[0], "last_seq": 5, "cancel_requested": False, "problem": None}
        assert out[1]["problem"]["code"] == "stale_lease" and out[1]["last_seq"] is None
        assert out[2]["last_seq"] == 3 and c.get(f"/tasks/{ids[1]}").json()["phase"] == "executing"
        logs = [e for e in c.get(f"/tasks/{ids[1]}/events").json()["items"] if e["kind"] == "log"]
        assert [e["data"] for e in logs] == [{}]  # the refused batch wrote nothing
        too_many = {
            "items": [{"id": ids[0], "token": tokens[ids[0]], "events": [{"kind": "log"}] * 5000}] * 5
        }
        problem(c.post("/worker-queues/q1/events", json=too_many), 422, "validation_error")
        admin = c.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {admin}"}) as a:
        bound = a.post("/keys", json={"name": "bound", "scopes": ["worker"], "queues": ["q2"]}).json()["key"]
        viewer = a.post("/keys", json={"name": "eyes", "scopes": ["viewer"]}).json()["key"]
    one = {"items": [{"id": ids[0], "token": tokens[ids[0]], "events": [{"kind": "log"}]}]}
    with server.client(headers={"Authorization": f"Bearer {bound}"}) as w:
        problem(w.post("/worker-queues/q1/events", json=one), 403, "queue_not_allowed")
    with server.client(headers={"Authorization": f"Bearer {viewer}"}) as v:
        problem(v.post("/worker-queues/q1/events", json=one), 403, "insufficient_scope")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_hot_calls_stay_on_the_fast_path(server: LiveServer) -> None:
    """On SQLite, create / exchange / events run in Database.fast_tx; work that asks for
    the ORM session is redone in a full tx (counted in `fast_fallbacks`). Only the worker's
    liveness touch (once per worker every few seconds) may take that detour."""
    db = state_of(server.app).db
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(3)]
        items = exchange(c, [], n=3)["tasks"]
        for item in items:
            tid, token = item["task"]["id"], item["token"]
            assert c.post(
                f"/tasks/{tid}/events", json={"token": token, "events": [{"kind": "log"}]}
            ).is_success
            one = {"items": [{"id": tid, "token": token, "events": [{"kind": "log"}]}]}
            assert c.post("/worker-queues/q1/events", json=one).is_success
        done = exchange(c, [{"id": i["task"]["id"], "token": i["token"], "result": None} for i in items], n=0)
        assert [r["status"] for r in done["reports"]] == ["completed"] * 3
    assert sorted(i["task"]["id"] for i in items) == sorted(ids)
    detours = dict(db.fast_fallbacks)
    assert sum(detours.values()) <= 1 and set(detours) <= {"_report_and_claim"}, detours


def test_a_post_of_many_tasks_events_is_applied_per_task(server: LiveServer) -> None:
    """The batched path (store/progress.py on SQLite): each task's events get its own next
    seqs and its phase, masked like any event; a stale lease or a reserved kind refuses
    that task's batch alone, and the refused ones write nothing."""
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(4)]
        tokens = {i["task"]["id"]: i["token"] for i in claim(c, n=4)}
        secret = "sk-" + "a" * 40
        body = {
            "items": [
                {"id": ids[0], "token": tokens[ids[0]], "events": [{"kind": "log", "data": {"n": n}} for n in range(3)]},
                {"id": ids[1], "token": "not-the-lease", "events": [{"kind": "log", "data": {"n": 9}}]},
                {"id": ids[2], "token": tokens[ids[2]], "events": [{"kind": "status", "data": {}}]},
                {"id": ids[3], "token": tokens[ids[3]], "events": [{"kind": "log", "data": {"line": secret}}], "phase": "executing"},
            ]
        }  # fmt: skip
        r = c.post("/worker-queues/q1/events", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["items"]
        assert out[0] == {"id": ids[0], "last_seq": 5, "cancel_requested": False, "problem": None}
        assert out[1]["problem"]["code"] == "stale_lease"
        assert out[2]["problem"]["code"] == "reserved_event_kind"
        assert out[3] == {"id": ids[3], "last_seq": 3, "cancel_requested": False, "problem": None}
        logs = {
            t: [e for e in c.get(f"/tasks/{t}/events").json()["items"] if e["kind"] != "status"] for t in ids
        }
        assert [(e["seq"], e["data"]) for e in logs[ids[0]]] == [(3, {"n": 0}), (4, {"n": 1}), (5, {"n": 2})]
        assert logs[ids[1]] == logs[ids[2]] == []
        assert [e["data"]["line"] for e in logs[ids[3]]] == ["[redacted]"]
        assert [c.get(f"/tasks/{t}").json()["last_seq"] for t in ids] == [5, 2, 2, 3]
        assert c.get(f"/tasks/{ids[3]}").json()["phase"] == "executing"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_post_of_many_tasks_events_is_two_statements_on_sqlite(server: LiveServer) -> None:
    """One UPDATE for every task's seqs and one INSERT for every event, not two per task."""
    db = state_of(server.app).db
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(5)]
        tokens = {i["task"]["id"]: i["token"] for i in claim(c, n=5)}
        statements: list[str] = []
        conn = db._fast.connection()._conn  # pyright: ignore[reportPrivateUsage, reportOptionalMemberAccess]
        conn.set_trace_callback(statements.append)  # pyright: ignore[reportUnknownMemberType]
        try:
            items = [{"id": t, "token": tokens[t], "events": [{"kind": "log"}] * 2} for t in ids]
            assert c.post("/worker-queues/q1/events", json={"items": items}).is_success
        finally:
            conn.set_trace_callback(None)  # pyright: ignore[reportUnknownMemberType]
    writes = [s.split()[0] for s in statements if s.split()[0] in ("UPDATE", "INSERT")]
    assert writes == ["UPDATE", *["INSERT"] * 10]  # executemany traces each row of the one INSERT


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_alone_on_postgresql_the_rows_read_after_the_commit_answer_the_same(server: LiveServer) -> None:
    """A replica no other one listens to reads an exchange's rows after its commit
    (store.db.Tx.after): the same answers, a stale report refused alone and explained
    without running the exchange again in a full transaction."""
    db = state_of(server.app).db
    peers = db.hub.peers
    wait_for(lambda: peers._listening, what="the hub's LISTEN")  # pyright: ignore[reportPrivateUsage]
    peers.clock = lambda: time.monotonic() + WARM_UP + 1  # past its warm-up: alone
    assert not peers.needed()
    with server.client() as c:
        seed(c)
        ids = [c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"}).json()["id"] for i in range(4)]
        a, b = claim(c, n=2)
        ok = {"id": a["task"]["id"], "token": a["token"], "result": {"output": "A"}}
        stale = {"id": b["task"]["id"], "token": "not-its-token", "result": 1}
        before = dict(db.fast_fallbacks)  # the first claim's (its worker's first touch)
        out = exchange(c, [ok, stale], n=2)
        assert db.fast_fallbacks == before
        assert out["reports"][0] == {"id": a["task"]["id"], "status": "completed", "problem": None}
        assert out["reports"][1]["problem"]["code"] == "stale_lease"
        assert sorted(t["task"]["id"] for t in out["tasks"]) == ids[2:]
        assert all(t["task"]["status"] == "running" and t["agent"]["name"] == "echo" for t in out["tasks"])
        assert c.get(f"/tasks/{b['task']['id']}").json()["status"] == "running"
        assert c.get(f"/tasks/{a['task']['id']}").json()["result"] == {"output": "A"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_empty_poll_checks_its_queue_without_an_orm_session_on_postgresql(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker's long-poll asks whether its queue exists each time it parks: on
    PostgreSQL one read of our own, not an ORM session (store.catalog.check_queue)."""
    looked: list[str] = []
    real = catalog.get_queue

    async def spy(session: Any, key: str) -> Any:
        looked.append(key)
        return await real(session, key)

    with server.client() as c:
        seed(c)  # its agents name their queue: looked up the ORM way, not this test's business
        monkeypatch.setattr(catalog, "get_queue", spy)
        assert exchange(c, [], wait=0) == {"reports": [], "tasks": []}
        r = c.post("/worker-queues/ghost/exchange", json={"worker_id": "w1", "wait_seconds": 0})
        problem(r, 404, "queue_not_found")
    assert looked == []


def _count_full_transactions(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, a 1 for each `db.tx()` opened (a full, ORM transaction)."""
    opened: list[int] = []
    full = db.tx

    def counted() -> Any:
        opened.append(1)
        return full()

    monkeypatch.setattr(db, "tx", counted)
    return opened


def test_a_single_complete_runs_on_the_fast_path(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker built on the SDK may complete task by task (`POST /tasks/{id}/complete`, no
    exchange): the fast path's statements, as a report in an exchange, with no ORM
    transaction (one cost 0.4 ms more per completion on SQLite and 1.2 on PostgreSQL:
    issue #15). A stale one is still refused and writes nothing."""
    db = state_of(server.app).db
    with server.client() as c:
        seed(c)
        c.post("/tasks", json={"agent": "echo", "prompt": "p"})
        (item,) = exchange(c, [], n=1)["tasks"]
        done = f"/tasks/{item['task']['id']}/complete"
        opened = _count_full_transactions(db, monkeypatch)
        before = dict(db.fast_fallbacks)  # the claim's worker touch may take that detour
        r = c.post(done, json={"token": item["token"], "result": {"ok": 1}})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        assert opened == [] and dict(db.fast_fallbacks) == before
        problem(c.post(done, json={"token": item["token"], "result": "again"}), 409, "stale_lease")
        assert c.get(f"/tasks/{item['task']['id']}").json()["result"] == {"ok": 1}


def test_failures_and_releases_run_on_the_fast_path(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's failure reads its task first (fenced by the lease) and the last usage it
    reported: read without the ORM session, so a failure in an exchange no longer sends the
    whole round again in a full transaction, nor does a single fail or release (each cost
    1.3-2.5 ms more: issue #15). What they do is unchanged: a failure keeps the stored usage,
    one after a cancel request ends `cancelled`, a release hands the task back, a stale one
    is refused."""
    db = state_of(server.app).db
    with server.client() as c:
        seed(c)
        for i in range(4):
            c.post("/tasks", json={"agent": "echo", "prompt": f"p{i}"})
        a, b, d, e = exchange(c, [], n=4)["tasks"]
        usage = {"input_tokens": 3}
        assert c.post(
            f"/tasks/{a['task']['id']}/events",
            json={"token": a["token"], "events": [{"kind": "usage", "data": usage}]},
        ).is_success
        assert c.post(f"/tasks/{d['task']['id']}/cancel").is_success
        opened = _count_full_transactions(db, monkeypatch)
        before = dict(db.fast_fallbacks)
        failed = {"id": a["task"]["id"], "token": a["token"], "error": {"code": "boom", "message": "no"}}
        ok = {"id": b["task"]["id"], "token": b["token"], "result": 1}
        assert [r["status"] for r in exchange(c, [failed, ok], n=0)["reports"]] == ["failed", "completed"]
        gone = c.post(f"/tasks/{d['task']['id']}/fail", json={"token": d["token"], "error": failed["error"]})
        back = c.post(f"/tasks/{e['task']['id']}/release", json={"token": e["token"]})
        assert (gone.json()["status"], back.json()["status"]) == ("cancelled", "pending")
        assert opened == [] and dict(db.fast_fallbacks) == before
        got = c.get(f"/tasks/{a['task']['id']}").json()
        assert (got["status"], got["usage"], got["error"]["code"]) == ("failed", usage, "boom")
        again = c.post(f"/tasks/{a['task']['id']}/fail", json={"token": a["token"], "error": failed["error"]})
        problem(again, 409, "stale_lease")
        problem(c.post(f"/tasks/{e['task']['id']}/release", json={"token": e["token"]}), 409, "stale_lease")


def test_a_workers_liveness_is_recorded_on_the_fast_path(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exchange records its worker as alive every few seconds (catalog.touch_worker), and
    a claim with capabilities looks for tasks with needs on its queue every few seconds
    (prereqs.plan): both in the fast transaction now, no longer through the ORM session,
    which ran the whole exchange (or a hand-off) again in a full one each time
    (meta_agent_fast_path_fallbacks_total's steady climbers). New: the row as the worker
    describes itself; known: its heartbeat, queue, capacity and capabilities move, its name
    and start stay."""
    state = state_of(server.app)
    db = state.db
    caps = {"digest": "d1", "bins": ["git"], "env": [], "mcp": []}
    with server.client() as c:
        seed(c)
        opened = _count_full_transactions(db, monkeypatch)
        before = dict(db.fast_fallbacks)
        exchange(
            c, [], worker_id="w9", name="first", hostname="h", capacity=2, version="1", capabilities=caps
        )
        (w,) = [w for w in c.get("/workers").json()["items"] if w["id"] == "w9"]
        assert (w["name"], w["hostname"], w["capacity"], w["version"], w["queue"]) == (
            "first",
            "h",
            2,
            "1",
            "q1",
        )
        state.worker_seen.clear()  # the next claim's touch is due
        exchange(c, [], worker_id="w9", name="renamed", capacity=3, capabilities={**caps, "digest": "d2"})
        (again,) = [w for w in c.get("/workers").json()["items"] if w["id"] == "w9"]
        assert (again["name"], again["capacity"], again["started_at"]) == ("first", 3, w["started_at"])
        assert again["last_heartbeat_at"] > w["last_heartbeat_at"]
        assert opened == [] and dict(db.fast_fallbacks) == before
    engine = sa.create_engine(sync_url(server.settings.database_url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT capabilities FROM workers WHERE id = 'w9'")).scalar_one()
    finally:
        engine.dispose()
    assert (json.loads(stored) if isinstance(stored, str) else stored)["digest"] == "d2"
