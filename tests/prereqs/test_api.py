"""Prerequisites over real HTTP, on SQLite and PostgreSQL: the agent's `requires`, the
claim's `capabilities`, `GET /worker-queues` and `GET /agents/{key}/check`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.board_api.test_api import problem, seed

DEPLOYER = {
    "name": "deployer",
    "runtime": "noop",
    "default_queue": "q1",
    "requires": {"bins": ["kubectl"], "env": ["KUBECONFIG"]},
}
CAN = {"digest": "d-can", "bins": ["kubectl"], "env": ["KUBECONFIG"]}
CANNOT = {"digest": "d-cannot", "bins": ["sh"]}


def claim(c: httpx.Client, worker: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"worker_id": worker, "max_tasks": 5, "wait_seconds": 0, **extra}
    r = c.post("/worker-queues/q1/exchange", json={**body, "reports": []})
    assert r.status_code == 200, r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


def test_requires_round_trips_and_bad_ones_are_422(server_factory: Any, db_url: str) -> None:
    with server_factory(db_url).client() as c:
        seed(c)
        made = c.post("/agents", json=DEPLOYER)
        assert made.status_code == 201, made.text
        assert made.json()["requires"] == {
            **DEPLOYER["requires"],
            "secrets": [],
            "mcp": [],
            "environment": None,
        }
        patched = c.patch("/agents/deployer", json={"requires": {"mcp": ["github"]}}).json()
        assert patched["requires"]["mcp"] == ["github"] and patched["requires"]["bins"] == []
        for bad in (
            {"bins": ["../bin/sh"]},
            {"env": ["1NOPE"]},
            {"bins": [f"b{i}" for i in range(33)]},
            {"colour": "blue"},
        ):
            problem(c.patch("/agents/deployer", json={"requires": bad}), 422, "validation_error")
        problem(
            c.patch("/agents/deployer", json={"requires": {"secrets": ["NO_SUCH"]}}), 422, "unknown_secret"
        )


def test_a_claim_carries_capabilities_and_a_bad_one_is_422(server_factory: Any, db_url: str) -> None:
    with server_factory(db_url).client() as c:
        seed(c)
        c.post("/agents", json=DEPLOYER)
        tid = c.post("/tasks", json={"agent": "deployer", "prompt": "ship"}).json()["id"]
        assert claim(c, "w-small", capabilities=CANNOT) == []
        waiting = c.get(f"/tasks/{tid}").json()
        assert waiting["needs"] == ["bin:kubectl", "env:KUBECONFIG"]
        assert waiting["waiting_for"] == "waiting: no worker on `q1` has `kubectl`, `KUBECONFIG`"
        assert claim(c, "w-small", capabilities_digest="d-cannot") == []  # the digest alone
        [got] = claim(c, "w-big", capabilities=CAN)
        assert got["task"]["id"] == tid and got["task"]["waiting_for"] is None
        assert got["agent"]["requires"]["bins"] == ["kubectl"]
        for bad in (
            {"capabilities": {"bins": ["x"]}},  # no digest
            {"capabilities": {"digest": "d", "bins": ["a/b"]}},
            {"capabilities": {"digest": "d", "extra": 1}},
            {"capabilities_digest": ""},
        ):
            body = {"worker_id": "w", "max_tasks": 1, "wait_seconds": 0, **bad}
            problem(c.post("/worker-queues/q1/claim", json=body), 422, "validation_error")


def test_queues_and_check_say_who_can_run_what(server_factory: Any, db_url: str) -> None:
    with server_factory(db_url).client() as c:
        seed(c)
        c.post("/agents", json=DEPLOYER)
        none = c.get("/agents/deployer/check").json()
        assert none["runnable"] is False and none["queues"] == {}
        claim(c, "w-small", capabilities=CANNOT)
        check = c.get("/agents/deployer/check").json()
        assert check["runnable"] is False
        assert check["queues"]["q1"]["missing"] == ["bin:kubectl", "env:KUBECONFIG"]
        [q1] = [q for q in c.get("/worker-queues").json()["items"] if q["name"] == "q1"]
        assert q1["prerequisites"] == [
            {
                "agent": "deployer",
                "live_workers": 1,
                "workers": [],
                "missing": ["bin:kubectl", "env:KUBECONFIG"],
            }
        ]
        claim(c, "w-big", capabilities=CAN)
        check = c.get("/agents/deployer/check").json()
        assert check["runnable"] is True and check["queues"]["q1"]["workers"] == ["w-big"]
        echo = c.get("/agents/echo/check").json()  # requires nothing: every live worker
        assert echo["runnable"] is True and echo["needs"] == []
        problem(c.get("/agents/nope/check"), 404, "agent_not_found")
