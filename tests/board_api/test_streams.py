"""SSE over a real socket: task streams resume exactly with Last-Event-ID; the board streams."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from tests.board_api.test_api import claim, seed
from tests.support import LiveServer, wait_for


def frames(resp: httpx.Response) -> Iterator[dict]:  # type: ignore[type-arg]
    """Parse SSE frames (id / event / data) from a streaming response."""
    cur: dict = {}  # type: ignore[type-arg]
    for line in resp.iter_lines():
        if not line:
            if "data" in cur:
                yield cur
            cur = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            cur[field] = value.removeprefix(" ")


def post_logs(c: httpx.Client, tid: str, token: str, start: int, n: int) -> None:
    events = [{"kind": "log", "data": {"line": f"line {i}"}} for i in range(start, start + n)]
    assert c.post(f"/tasks/{tid}/events", json={"token": token, "events": events}).status_code == 200


def test_reconnect_with_last_event_id_gets_every_event_once_in_order(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "stream me"}).json()["id"]
        (item,) = claim(c)
        token = item["token"]
        post_logs(c, tid, token, 0, 5)  # seq 3..7
        seen: list[int] = []
        lines: list[str] = []
        # First connection: read a few events, then drop the connection mid-stream.
        with (
            httpx.Client(base_url=server.url, timeout=10) as s,
            s.stream("GET", f"/api/v1/tasks/{tid}/stream") as r,
        ):
            assert r.headers["content-type"].startswith("text/event-stream")
            for f in frames(r):
                seen.append(int(f["id"]))
                if f["event"] == "log":
                    lines.append(json.loads(f["data"])["data"]["line"])
                if len(seen) == 4:
                    break
        # Meanwhile the worker carries on and finishes.
        post_logs(c, tid, token, 5, 5)
        assert c.post(f"/tasks/{tid}/complete", json={"token": token, "result": "ok"}).status_code == 200
        last = c.get(f"/tasks/{tid}").json()["last_seq"]
        end = None
        with (
            httpx.Client(base_url=server.url, timeout=10) as s,
            s.stream("GET", f"/api/v1/tasks/{tid}/stream", headers={"Last-Event-ID": str(seen[-1])}) as r,
        ):
            for f in frames(r):
                if f.get("event") == "end":
                    end = json.loads(f["data"])
                    break
                seen.append(int(f["id"]))
                if f["event"] == "log":
                    lines.append(json.loads(f["data"])["data"]["line"])
    assert seen == list(range(1, last + 1))
    assert lines == [f"line {i}" for i in range(10)]
    assert end is not None and end["status"] == "completed"


def test_live_follower_sees_events_as_they_are_posted(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "live"}).json()["id"]
        (item,) = claim(c)
        got: list[dict] = []  # type: ignore[type-arg]
        first_two = threading.Event()

        def follow() -> None:
            with (
                httpx.Client(base_url=server.url, timeout=10) as s,
                s.stream("GET", f"/api/v1/tasks/{tid}/stream") as r,
            ):
                for f in frames(r):
                    got.append(f)
                    if len(got) == 2:
                        first_two.set()
                    if f.get("event") == "end":
                        return

        t = threading.Thread(target=follow)
        t.start()
        assert first_two.wait(10)  # pending + running, before anything else exists
        post_logs(c, tid, item["token"], 0, 3)
        c.post(f"/tasks/{tid}/complete", json={"token": item["token"], "result": 1})
        t.join(10)
        assert not t.is_alive()
    assert [f.get("event") for f in got] == ["status", "status", "log", "log", "log", "status", "end"]


def test_board_stream_sends_snapshot_then_changes(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        got: list[tuple[str, dict]] = []  # type: ignore[type-arg]
        snapshot = threading.Event()
        done = threading.Event()

        def follow() -> None:
            with (
                httpx.Client(base_url=server.url, timeout=10) as s,
                s.stream("GET", "/api/v1/board/stream") as r,
            ):
                for f in frames(r):
                    got.append((f["event"], json.loads(f["data"])))
                    if f["event"] == "board":
                        snapshot.set()
                    if f["event"] == "task" and got[-1][1]["status"] == "completed":
                        done.set()
                        return

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        assert snapshot.wait(10)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "card"}).json()["id"]
        (item,) = claim(c)
        c.post(f"/tasks/{tid}/complete", json={"token": item["token"], "result": 1})
        assert done.wait(10)
    statuses = [d["status"] for kind, d in got if kind == "task" and d["id"] == tid]
    # Each change is announced; the card read may already show a later status when changes
    # come faster than the follower reads, so the order is what must hold.
    order = ["pending", "running", "completed"]
    assert statuses[-1] == "completed" and statuses == sorted(statuses, key=order.index)
    assert len(statuses) >= 2


def test_open_streams_per_key_are_bounded(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url, max_streams_per_key=2)
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "x"}).json()["id"]
        with httpx.Client(base_url=server.url, timeout=10) as s:
            with (
                s.stream("GET", f"/api/v1/tasks/{tid}/stream") as one,
                s.stream("GET", "/api/v1/board/stream") as two,
            ):
                assert one.status_code == 200 and two.status_code == 200
                third = s.get(f"/api/v1/tasks/{tid}/stream")
                assert third.status_code == 429 and third.json()["code"] == "too_many_streams"
                claim = s.post("/api/v1/worker-queues/q2/claim", json={"worker_id": "w", "wait_seconds": 1})
                assert claim.status_code == 429
            # Closing the streams gives the slots back.
            wait_for(lambda: not server.app.state.limiter.open, 5, "the slots to be released")
            assert c.post("/worker-queues/q2/claim", json={"worker_id": "w", "wait_seconds": 0}).json() == {
                "tasks": []
            }


def test_a_frame_built_from_a_row_is_the_frame_of_the_model() -> None:
    """The feeds encode rows without the ORM (board_api.feeds.event_frame); the bytes must be
    what the model route gave, which the SDK and the board parse."""
    from datetime import UTC, datetime

    from board_api import wire
    from board_api.feeds import event_frame, sse
    from store.models import TaskEvent

    at = datetime(2026, 12, 4, 15, 1, 2, 345678, tzinfo=UTC)
    row = {
        "task_id": "t1",
        "seq": 7,
        "kind": "message_delta",
        "data": {"text": 'é\n"x"', "nan": float("nan"), "inf": [float("-inf")], "t": 1 / 3, "big": 2**70},
        "attempt": 2,
        "created_at": at,
    }
    model = sse(wire.event_out(TaskEvent(**row)).model_dump_json(), "message_delta", "7")
    assert event_frame(row) == model


def test_opening_a_stream_on_postgresql_takes_no_sqlalchemy_connection(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """A client follows its task right after creating it (`exec --follow`), while the same
    event loop runs that task's claim. On PostgreSQL the stream's 404 check and its feed's
    first read go through Database.fast_read, not an SQLAlchemy session each: the opening
    cost 3.8-3.95 ms of the server's CPU with them, 1.4-1.8 ms without (/tmp bench of 1,000
    openings), and the claim waited behind it. An unknown task is still a 404."""
    import sqlalchemy as sa

    from board_api.state import state_of

    server = server_factory(db_url, reaper_interval=3600.0)  # nothing else reads meanwhile
    db = state_of(server.app).db
    checkouts: list[object] = []

    def checkout(*args: object) -> None:
        checkouts.append(args)

    with server.client() as c, httpx.Client(base_url=server.url, timeout=10) as s:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "follow me"}).json()["id"]
        sa.event.listen(db.engine.sync_engine, "checkout", checkout)
        try:
            with s.stream("GET", f"/api/v1/tasks/{tid}/stream") as r:
                first = next(frames(r))
            missing = s.get("/api/v1/tasks/no-such-task/stream")
        finally:
            sa.event.remove(db.engine.sync_engine, "checkout", checkout)
    assert (first["id"], first["event"]) == ("1", "status")
    assert missing.status_code == 404 and missing.json()["code"] == "task_not_found"
    if not db.is_sqlite:
        assert checkouts == []


def test_a_plain_stream_opening_is_served_without_fastapis_routing(server: LiveServer) -> None:
    """`GET /tasks/{id}/stream` without a query or Last-Event-ID is a hot route (board_api/
    hotroutes.py): FastAPI's matching of ~120 routes and its dependencies cost its opening
    ~0.5 ms of the loop, which the claim of the followed task waits behind. A resume and a
    query still go through FastAPI (it validates them), and each answer is the same."""
    from board_api.hotroutes import HotRoutes

    with server.client() as c, httpx.Client(base_url=server.url, timeout=10) as s:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "follow me"}).json()["id"]
        hot: Any = server.app.middleware_stack
        while not isinstance(hot, HotRoutes):
            hot = hot.app
        inner, routed = hot.app, []

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            routed.append(scope["path"])
            await inner(scope, receive, send)

        hot.app = counted
        try:
            with s.stream("GET", f"/api/v1/tasks/{tid}/stream") as r:
                first = next(frames(r))
            missing = s.get("/api/v1/tasks/no-such-task/stream")
            plain = list(routed)
            with s.stream("GET", f"/api/v1/tasks/{tid}/stream", headers={"Last-Event-ID": "0"}) as r:
                resumed = next(frames(r))
            bad = s.get(f"/api/v1/tasks/{tid}/stream?after=-1")
        finally:
            hot.app = inner
    assert plain == []
    assert routed == [f"/api/v1/tasks/{tid}/stream"] * 2
    assert first == resumed and (first["id"], first["event"]) == ("1", "status")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert missing.status_code == 404 and missing.json()["code"] == "task_not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    assert bad.status_code == 422
