"""Webhooks and A2A on two control-plane replicas sharing one PostgreSQL: a delivery sent to
both makes one task and one callback, and an A2A task sent to one replica is read, followed
to its end and cancelled through the other (no sticky sessions)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hooks.helpers import github_headers, make_hook, payload, receiver
from tests.hooks.helpers import seed as seed_hooks
from tests.support import free_port, spawn, wait_for

pytestmark = [
    pytest.mark.xdist_group("processes"),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def two(db_url: str, tmp_path: Path) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    for i in range(2):
        port = free_port()
        procs.append(
            spawn(
                ["-m", "cli.serve"],
                log=tmp_path / f"replica{i}.log",
                META_AGENT_DATABASE_URL=db_url,
                META_AGENT_PORT=str(port),
                META_AGENT_EMBEDDED_WORKER="false",
                META_AGENT_HOOK_CALLBACK_ALLOW="127.0.0.1",
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_for(lambda url=url: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, url)
    yield urls
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_a_delivery_sent_to_both_replicas_makes_one_task_and_one_callback(two: list[str]) -> None:
    a, b = two
    with (
        receiver() as rx,
        httpx.Client(base_url=a + "/api/v1") as ca,
        httpx.Client(base_url=b + "/api/v1") as cb,
    ):
        seed_hooks(ca)
        secret = make_hook(ca, callback_url=rx.url)["secret"]
        body = payload()
        headers = github_headers(secret, body, "twice-1")
        answers: list[httpx.Response] = []

        def send(url: str) -> None:
            answers.append(httpx.post(f"{url}/hooks/alerts", content=body, headers=headers, timeout=30))

        senders = [threading.Thread(target=send, args=(url,)) for url in (a, b, a, b)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(30)
        assert len(answers) == 4 and all(r.status_code in (200, 202) for r in answers), [
            r.text for r in answers
        ]
        (task_id,) = {r.json()["task_id"] for r in answers}
        tasks = cb.get("/tasks", params={"source": "webhook"}).json()["items"]
        assert [t["id"] for t in tasks] == [task_id]

        # Finish it through replica B; both replicas watch for finished hook tasks.
        claim = cb.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 5}).json()
        (item,) = claim["tasks"]
        done = cb.post(f"/tasks/{task_id}/complete", json={"token": item["token"], "result": {"ok": 1}})
        assert done.status_code == 200, done.text

        def sent() -> bool:
            deliveries = ca.get("/hooks/alerts/deliveries").json()["items"]
            return bool(deliveries) and deliveries[0]["callback_status"] == "sent"

        wait_for(sent, 20, "the callback recorded as sent")
        assert len(rx.got) == 1 and rx.got[0].body["task_id"] == task_id
        assert ca.get("/hooks/alerts/deliveries").json()["items"][0]["callback_attempts"] == 1


def _rpc(url: str, key: str, method: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    r = httpx.post(url + "/a2a", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "result" in out, out
    return out["result"]


def test_an_a2a_task_sent_to_one_replica_is_read_and_cancelled_on_the_other(two: list[str]) -> None:
    a, b = two
    with httpx.Client(base_url=a + "/api/v1") as c:
        seed_hooks(c)
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    message = {
        "messageId": "m1",
        "role": "user",
        "parts": [{"kind": "text", "text": "hi"}],
        "metadata": {"skill": "echo"},
    }
    sent = _rpc(a, admin, "message/send", {"message": message, "configuration": {"blocking": False}})
    task_id = sent["id"]
    got = _rpc(b, admin, "tasks/get", {"id": task_id})
    assert got["id"] == task_id and got["status"]["state"] == "submitted"
    cancelled = _rpc(b, admin, "tasks/cancel", {"id": task_id})
    assert cancelled["status"]["state"] == "canceled"
    assert _rpc(a, admin, "tasks/get", {"id": task_id})["status"]["state"] == "canceled"
    with httpx.Client(base_url=a + "/api/v1", headers={"authorization": f"Bearer {admin}"}) as c:
        t = c.get(f"/tasks/{task_id}").json()
        assert (t["status"], t["source"]) == ("cancelled", "a2a")
