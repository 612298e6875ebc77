"""`/api/v1/secrets` and the worker route, over real HTTP on SQLite and PostgreSQL: admins
only, names only out, the worker route fenced by the lease and the key's queues, values
masked at ingest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.board_api.test_api import problem, seed
from tests.secrets.helpers import KEY, fresh
from tests.support import LiveServer

Keyed = Callable[[LiveServer], dict[str, httpx.Client]]


@pytest.fixture
def keyed() -> Iterator[Keyed]:
    """Clients for an admin, an operator, two worker keys and one bound to queue q2 (closed after)."""
    made: list[httpx.Client] = []

    def make(server: LiveServer) -> dict[str, httpx.Client]:
        with server.client() as c:
            seed(c)
            admin = c.post("/keys", json={"name": "admin", "scopes": ["admin"]}).json()["key"]
        out = {"admin": server.client(headers={"Authorization": f"Bearer {admin}"})}
        for name, scopes, queues in (
            ("operator", ["operator"], None),
            ("w1", ["worker"], None),
            ("w2", ["worker"], None),
            ("q2only", ["worker"], ["q2"]),
        ):
            body: dict[str, Any] = {"name": name, "scopes": scopes, **({"queues": queues} if queues else {})}
            key = out["admin"].post("/keys", json=body).json()["key"]
            out[name] = server.client(headers={"Authorization": f"Bearer {key}"})
        made.extend(out.values())
        return out

    yield make
    for c in made:
        c.close()


def test_only_admins_manage_secrets_and_no_answer_holds_a_value(
    server_factory: Any, db_url: str, keyed: Keyed
) -> None:
    cs = keyed(server_factory(db_url, secret_key=KEY))
    admin, operator = cs["admin"], cs["operator"]
    value = fresh()

    created = admin.put("/secrets/DEPLOY_TOKEN", json={"value": value})
    replaced = admin.put("/secrets/DEPLOY_TOKEN", json={"value": fresh()})
    ref = admin.put("/secrets/FROM_WORKER", json={"env": "WORKER_VAR"})
    listed = admin.get("/secrets")
    refused = [
        operator.get("/secrets"),
        operator.put("/secrets/X_TOKEN", json={"value": fresh()}),
        operator.delete("/secrets/DEPLOY_TOKEN"),
        cs["w1"].get("/secrets"),
    ]

    assert created.status_code == 201 and replaced.status_code == 200, created.text
    assert created.json()["kind"] == "stored" and ref.json() == {
        **ref.json(),
        "kind": "env",
        "env": "WORKER_VAR",
    }
    assert [(i["name"], i["kind"]) for i in listed.json()["items"]] == [
        ("DEPLOY_TOKEN", "stored"),
        ("FROM_WORKER", "env"),
    ]
    for r in refused:
        problem(r, 403, "insufficient_scope")
    for r in (created, replaced, listed, admin.get("/agents"), admin.get("/openapi.json")):
        assert value not in r.text
    assert admin.delete("/secrets/FROM_WORKER").status_code == 204
    problem(admin.delete("/secrets/FROM_WORKER"), 404, "secret_not_found")


def test_bad_bodies_get_a_clear_422(server_factory: Any, db_url: str) -> None:
    with server_factory(db_url).client() as c:  # no META_AGENT_SECRET_KEY
        no_key = problem(c.put("/secrets/A_TOKEN", json={"value": fresh()}), 422, "secret_key_missing")
        both = problem(
            c.put("/secrets/A_TOKEN", json={"value": fresh(), "env": "X"}), 422, "validation_error"
        )
        neither = problem(c.put("/secrets/A_TOKEN", json={}), 422, "validation_error")
        bad_name = problem(c.put("/secrets/a-b", json={"env": "X"}), 422, "invalid_secret_name")
        env_ok = c.put("/secrets/A_TOKEN", json={"env": "A_VAR"})
        seed(c)
        unknown = c.patch("/agents/echo", json={"secrets": ["A_TOKEN", "NOT_THERE"]})

    assert "META_AGENT_SECRET_KEY" in no_key["detail"] and "--from-env" in no_key["detail"]
    assert "value" in both["detail"] and "value" in neither["detail"] and "a-b" in bad_name["detail"]
    assert env_ok.status_code == 201
    assert "NOT_THERE" in problem(unknown, 422, "unknown_secret")["detail"]


def test_the_worker_route_gives_values_only_to_the_lease_holder(
    server_factory: Any, db_url: str, keyed: Keyed
) -> None:
    cs = keyed(server_factory(db_url, secret_key=KEY))
    admin, w1, w2 = cs["admin"], cs["w1"], cs["w2"]
    value = fresh()
    admin.put("/secrets/DEPLOY_TOKEN", json={"value": value})
    admin.put("/secrets/FROM_WORKER", json={"env": "WORKER_VAR"})
    admin.put("/secrets/NOT_LISTED", json={"value": fresh()})
    r = admin.post(
        "/agents",
        json={
            "name": "deployer",
            "runtime": "noop",
            "default_queue": "q1",
            "secrets": ["DEPLOY_TOKEN", "FROM_WORKER"],
        },
    )
    assert r.status_code == 201 and r.json()["secrets"] == ["DEPLOY_TOKEN", "FROM_WORKER"], r.text
    tid = admin.post("/tasks", json={"agent": "deployer", "prompt": "p"}).json()["id"]
    claimed = w1.post("/worker-queues/q1/claim", json={"worker_id": "w1", "wait_seconds": 0}).json()["tasks"]
    token = claimed[0]["token"]

    got = w1.post(f"/tasks/{tid}/secrets", json={"token": token})
    forged = [w2.post(f"/tasks/{tid}/secrets", json={"token": guess}) for guess in ("1", "x" * 43)]
    other_queue = cs["q2only"].post(f"/tasks/{tid}/secrets", json={"token": token})
    operator_call = cs["operator"].post(f"/tasks/{tid}/secrets", json={"token": token})
    assert w1.post(f"/tasks/{tid}/complete", json={"token": token, "result": "ok"}).status_code == 200
    after = w1.post(f"/tasks/{tid}/secrets", json={"token": token})

    assert claimed[0]["agent"]["secrets"] == ["DEPLOY_TOKEN", "FROM_WORKER"]
    assert got.status_code == 200, got.text
    assert got.json() == {
        "values": {"DEPLOY_TOKEN": value},
        "env": {"FROM_WORKER": "WORKER_VAR"},
        "missing": {},
    }
    for r in forged:
        assert value not in problem(r, 409, "stale_lease")["detail"]
    problem(other_queue, 403, "queue_not_allowed")
    problem(operator_call, 403, "insufficient_scope")  # even with the token: not a worker key
    problem(after, 409, "stale_lease")  # the task is over: the lease with it
    problem(w1.post("/tasks/nope/secrets", json={"token": token}), 404, "task_not_found")


def test_values_a_worker_did_not_mask_are_masked_at_ingest(server_factory: Any, db_url: str) -> None:
    server = server_factory(db_url, secret_key=KEY)
    value = fresh()
    with server.client() as c:
        seed(c)
        c.put("/secrets/DEPLOY_TOKEN", json={"value": value})
        c.patch("/agents/echo", json={"secrets": ["DEPLOY_TOKEN"]})
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        token = c.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 0}).json()["tasks"][
            0
        ]["token"]
        c.post(
            f"/tasks/{tid}/events",
            json={"token": token, "events": [{"kind": "log", "data": {"line": value}}]},
        )
        c.post(
            f"/tasks/{tid}/fail", json={"token": token, "error": {"code": "command_failed", "message": value}}
        )
        stored = [
            c.get(f"/tasks/{tid}/events").text,
            c.get(f"/tasks/{tid}").text,
            c.get(f"/tasks/{tid}/stream").text,
        ]

    assert all(value not in text and "[redacted]" in text for text in stored), stored


def test_a_value_the_server_cannot_decrypt_is_reported_missing(server_factory: Any, db_url: str) -> None:
    with server_factory(db_url, secret_key=KEY).client() as c:
        seed(c)
        c.put("/secrets/DEPLOY_TOKEN", json={"value": fresh()})
        c.patch("/agents/echo", json={"secrets": ["DEPLOY_TOKEN"]})
    # A replica started without the key (or with another one) on the same database.
    with server_factory(db_url).client() as c:
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        item = c.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 0}).json()["tasks"][
            0
        ]
        got = c.post(f"/tasks/{tid}/secrets", json={"token": item["token"]})

    assert got.status_code == 200 and got.json()["values"] == {}
    assert "META_AGENT_SECRET_KEY" in got.json()["missing"]["DEPLOY_TOKEN"]
