"""The way back: a hook task's outcome posted to the callback URL after the task ends,
through the SSRF guard, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest

from board_api.state import state_of
from tests.hooks.helpers import github_headers, make_hook, payload, post_hook, receiver, seed
from tests.support import LiveServer, wait_for


def _deliveries(server: LiveServer, name: str = "alerts") -> list[dict]:  # type: ignore[type-arg]
    with server.client() as c:
        return c.get(f"/hooks/{name}/deliveries").json()["items"]  # type: ignore[no-any-return]


def _finish(server: LiveServer, task_id: str, result: object) -> None:
    """Run the task to completion through the worker protocol (the server is open: admin)."""
    with server.client() as c:
        r = c.post("/worker-queues/q1/claim", json={"worker_id": "w1", "max_tasks": 1, "wait_seconds": 0})
        (item,) = r.json()["tasks"]
        assert item["task"]["id"] == task_id
        done = c.post(f"/tasks/{task_id}/complete", json={"token": item["token"], "result": result})
        assert done.json()["status"] == "completed", done.text


def _board_followers(server: LiveServer) -> int:
    hub = state_of(server.app).db.hub
    return len(hub._subs.get("board", ()))  # pyright: ignore[reportPrivateUsage]


def test_the_outcome_is_posted_signed_once_the_task_completes(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url, hook_callback_allow="127.0.0.1")
    with receiver() as rx, server.client() as c:
        seed(c)
        # No callback to send: the sender does not follow the board (each task's change
        # would wake it for nothing).
        assert _board_followers(server) == 0
        secret = make_hook(c, callback_url=rx.url)["secret"]
        body = payload()
        task_id = post_hook(server, "alerts", body, github_headers(secret, body, "cb-1")).json()["task_id"]
        assert _deliveries(server)[0]["callback_status"] == "pending"
        wait_for(lambda: _board_followers(server) == 1, 10, "the sender to follow the board")
        assert rx.got == []  # nothing while the task runs

        _finish(server, task_id, {"output": "disk cleaned"})

        got = wait_for(lambda: rx.got, 15, "the callback")[0]
        assert got.body["task_id"] == task_id and got.body["status"] == "completed"
        assert got.body["result"] == {"output": "disk cleaned"} and got.body["hook"] == "alerts"
        assert got.body["delivery_id"] == "cb-1" and got.body["error"] is None
        ts, v1 = (p.split("=", 1)[1] for p in got.headers["x-meta-agent-signature"].split(","))
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + got.raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, expected)
        wait_for(lambda: _deliveries(server)[0]["callback_status"] == "sent", 10, "the callback recorded")
        assert _deliveries(server)[0]["callback_attempts"] == 1
        assert len(rx.got) == 1
        wait_for(lambda: _board_followers(server) == 0, 10, "the sender to stop following the board")


def test_a_failing_receiver_is_retried_a_bounded_number_of_times(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url, hook_callback_allow="127.0.0.1")
    with receiver() as rx, server.client() as c:
        rx.statuses = [503]  # the first try fails, the second is taken
        seed(c)
        secret = make_hook(c, callback_url=rx.url)["secret"]
        body = payload()
        task_id = post_hook(server, "alerts", body, github_headers(secret, body, "cb-2")).json()["task_id"]
        assert c.post(f"/tasks/{task_id}/cancel").json()["status"] == "cancelled"

        wait_for(lambda: _deliveries(server)[0]["callback_status"] == "sent", 20, "the retried callback")
        assert [r.body["status"] for r in rx.got] == ["cancelled", "cancelled"]
        assert _deliveries(server)[0]["callback_attempts"] == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.169.254"])
def test_a_callback_to_a_refused_address_is_not_sent_and_the_refusal_is_recorded(
    server: LiveServer, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    with receiver() as rx, server.client() as c:
        url = rx.url.replace("127.0.0.1", host)
        seed(c)
        secret = make_hook(c, callback_url=url)["secret"]
        body = payload()
        with caplog.at_level(logging.WARNING, logger="board_api.hook_callbacks"):
            task_id = post_hook(server, "alerts", body, github_headers(secret, body, "cb-3")).json()[
                "task_id"
            ]
            assert c.post(f"/tasks/{task_id}/cancel").json()["status"] == "cancelled"
            (row,) = wait_for(
                lambda: [d for d in _deliveries(server) if d["callback_status"] == "refused"],
                15,
                "the refusal",
            )
        assert host in row["callback_error"] and row["callback_attempts"] == 1
        assert rx.got == []
        refusals = [r for r in caplog.records if "refused" in r.getMessage() and task_id in r.getMessage()]
        assert refusals, "the refusal is logged"


async def test_the_callback_guard_refuses_private_networks_unless_allowed() -> None:
    from board_api.hook_callbacks import CallbackGuard, HookCallbacks
    from kernel.netguard import Blocked
    from kernel.settings import Settings

    default = CallbackGuard(None)
    for host in ("10.0.0.5", "192.168.1.1", "172.16.0.1", "fd00::1", "127.0.0.1", "169.254.169.254"):
        with pytest.raises(Blocked):
            await default.check(host)
    assert [str(ip) for ip in await default.check("93.184.216.34")] == ["93.184.216.34"]

    opened = CallbackGuard("10.20.0.0/16, 127.0.0.1")
    assert [str(ip) for ip in await opened.check("10.20.1.2")] == ["10.20.1.2"]
    assert [str(ip) for ip in await opened.check("127.0.0.1")] == ["127.0.0.1"]
    with pytest.raises(Blocked):
        await opened.check("10.30.0.1")  # a private address outside the allowed network

    with pytest.raises(ValueError, match="META_AGENT_HOOK_CALLBACK_ALLOW"):
        HookCallbacks(Settings(hook_callback_allow="10.0.0.0/33/x"))
