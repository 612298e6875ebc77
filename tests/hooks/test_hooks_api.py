"""Webhooks in over real HTTP, on SQLite and PostgreSQL: admin routes, signatures, replay
protection, idempotency, templates, the host guard."""

from __future__ import annotations

import json
import time

import httpx

from tests.board_api.test_api import problem
from tests.hooks.helpers import generic_headers, github_headers, make_hook, payload, post_hook, seed
from tests.support import LiveServer


def test_admin_creates_lists_gets_rotates_and_deletes_hooks(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        created = make_hook(c, scheme="generic")
        assert created["secret"].startswith("whsec_") and created["url_path"] == "/hooks/alerts"
        got = c.get("/hooks/alerts").json()
        assert got["secret"] is None and got["params"]["host"] == "{{ alert.host }}"
        assert [h["name"] for h in c.get("/hooks").json()["items"]] == ["alerts"]
        problem(c.post("/hooks", json={**got, "secret": None}), 422, "validation_error")  # unknown fields
        again = {k: got[k] for k in ("name", "agent", "prompt_template")}
        problem(c.post("/hooks", json=again), 409, "name_taken")
        rotated = c.post("/hooks/alerts/rotate-secret").json()
        assert rotated["secret"] not in (None, created["secret"])
        # The old secret no longer verifies; the new one does.
        body = payload()
        old = post_hook(server, "alerts", body, generic_headers(created["secret"], body))
        problem(old, 401, "invalid_signature")
        assert post_hook(server, "alerts", body, generic_headers(rotated["secret"], body)).status_code == 202
        assert c.delete("/hooks/alerts").status_code == 204
        problem(c.get("/hooks/alerts"), 404, "hook_not_found")
        problem(
            post_hook(server, "alerts", body, generic_headers(rotated["secret"], body)), 404, "hook_not_found"
        )


def test_bad_hook_definitions_are_clear_422s(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        base = {"name": "h", "agent": "echo", "prompt_template": "x"}
        problem(c.post("/hooks", json={**base, "prompt_template": "{% for %}"}), 422, "invalid_template")
        problem(c.post("/hooks", json={**base, "params": {"a": "{{ x "}}), 422, "invalid_template")
        problem(c.post("/hooks", json={**base, "agent": "ghost"}), 404, "agent_not_found")
        problem(c.post("/hooks", json={**base, "queue": "ghost"}), 404, "queue_not_found")
        problem(c.post("/hooks", json={**base, "name": "Bad Name"}), 422, "invalid_name")
        problem(
            c.post("/hooks", json={**base, "callback_url": "file:///etc/passwd"}), 422, "invalid_callback_url"
        )
        problem(c.post("/hooks", json={**base, "scheme": "md5"}), 422, "validation_error")


def test_a_github_delivery_becomes_one_webhook_task(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        secret = make_hook(c)["secret"]
        body = payload(severity="high")

        first = post_hook(server, "alerts", body, github_headers(secret, body, "gh-1"))
        replay = post_hook(server, "alerts", body, github_headers(secret, body, "gh-1"))

        assert first.status_code == 202, first.text
        assert first.json()["duplicate"] is False and first.json()["delivery_id"] == "gh-1"
        assert replay.status_code == 200 and replay.json()["duplicate"] is True
        assert replay.json()["task_id"] == first.json()["task_id"]
        task = c.get(f"/tasks/{first.json()['task_id']}").json()
        assert task["prompt"] == "Investigate alert DiskFull on db-1"
        assert task["parameters"] == {"host": "db-1", "sev": "high"}
        assert task["source"] == "webhook" and task["requested_by"] == "hook:alerts"
        assert task["queue"] == "q1" and task["agent"] == "echo"
        assert len(c.get("/tasks", params={"source": "webhook"}).json()["items"]) == 1
        (delivery,) = c.get("/hooks/alerts/deliveries").json()["items"]
        assert delivery["task_id"] == task["id"] and delivery["callback_status"] == "none"


def test_unsigned_or_forged_deliveries_get_401_and_make_nothing(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        secret = make_hook(c)["secret"]
        body = payload()
        forged = github_headers("not-the-secret", body)
        tampered = github_headers(secret, body)
        problem(
            post_hook(server, "alerts", body, {"Content-Type": "application/json"}), 401, "invalid_signature"
        )
        problem(post_hook(server, "alerts", body, forged), 401, "invalid_signature")
        problem(post_hook(server, "alerts", body + b" ", tampered), 401, "invalid_signature")
        # The signature is checked before the body is parsed: garbage unsigned is a 401, not a 422.
        problem(post_hook(server, "alerts", b"{not json", forged), 401, "invalid_signature")
        assert c.get("/tasks").json()["items"] == []
        assert c.get("/hooks/alerts/deliveries").json()["items"] == []


def test_generic_scheme_refuses_stale_timestamps_and_dedupes_replays(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        secret = make_hook(c, scheme="generic")["secret"]
        body = payload()
        stale = generic_headers(secret, body, ts=int(time.time()) - 360)
        problem(post_hook(server, "alerts", body, stale), 401, "stale_timestamp")
        future = generic_headers(secret, body, ts=int(time.time()) + 360)
        problem(post_hook(server, "alerts", body, future), 401, "stale_timestamp")

        signed = generic_headers(secret, body, request_id="req-1")
        first = post_hook(server, "alerts", body, signed)
        same_id = post_hook(server, "alerts", body, generic_headers(secret, body, request_id="req-1"))
        # A captured request replayed under another X-Request-Id: the signature is the same.
        other_id = post_hook(server, "alerts", body, {**signed, "X-Request-Id": "req-2"})

        assert first.status_code == 202, first.text
        assert same_id.status_code == 200 and other_id.status_code == 200
        assert first.json()["task_id"] == same_id.json()["task_id"] == other_id.json()["task_id"]
        assert len(c.get("/tasks").json()["items"]) == 1
        problem(
            post_hook(server, "alerts", body, {**signed, "X-Request-Id": "bad id!"}),
            422,
            "invalid_delivery_id",
        )


def test_templates_fail_clearly_and_stay_in_the_sandbox(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        secret = make_hook(c)["secret"]
        missing = json.dumps({"alert": {"name": "DiskFull"}}).encode()
        r = problem(
            post_hook(server, "alerts", missing, github_headers(secret, missing, "m")),
            422,
            "template_undefined",
        )
        assert "host" in r["detail"]
        not_json = b"{not json"
        problem(
            post_hook(server, "alerts", not_json, github_headers(secret, not_json, "n")), 422, "invalid_json"
        )
        cases = {
            "escape": ("{{ alert.__class__.__mro__ }}", "template_unsafe"),
            "mutate": ("{{ alert.tags.append('x') }}", "template_unsafe"),
            "huge": ("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", "template_output_too_large"),
        }
        for name, (template, code) in cases.items():
            h = make_hook(c, name=name, prompt_template=template, params={})
            body = json.dumps({"alert": {"tags": []}}).encode()
            problem(post_hook(server, name, body, github_headers(h["secret"], body, name)), 422, code)
        assert c.get("/tasks").json()["items"] == []


def test_hooks_need_admin_but_deliveries_need_no_key(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
        operator = c.post(
            "/keys", json={"name": "op", "scopes": ["operator"]}, headers={"authorization": f"Bearer {admin}"}
        ).json()["key"]
    with server.client(headers={"authorization": f"Bearer {operator}"}) as op:
        problem(
            op.post("/hooks", json={"name": "x", "agent": "echo", "prompt_template": "p"}),
            403,
            "insufficient_scope",
        )
        problem(op.get("/hooks"), 403, "insufficient_scope")
    with server.client() as anon:
        problem(anon.get("/hooks"), 401, "unauthorized")
    with server.client(headers={"authorization": f"Bearer {admin}"}) as c:
        secret = make_hook(c)["secret"]
        body = payload()
        # Another server's signed call: no key, no Origin; passes the host guard like Slack's.
        assert post_hook(server, "alerts", body, github_headers(secret, body)).status_code == 202
        # A web page's cross-site post is refused by the host guard, signature or not.
        cross = {**github_headers(secret, body, "x-site"), "Origin": "https://evil.example"}
        problem(post_hook(server, "alerts", body, cross), 403, "cross_origin_refused")
        foreign_host = {**github_headers(secret, body, "x-host"), "Host": "evil.example"}
        problem(post_hook(server, "alerts", body, foreign_host), 421, "misdirected_request")


def test_a_body_over_the_limit_is_refused_before_the_signature(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url, max_body_bytes=10_000)
    with server.client() as c:
        seed(c)
        secret = make_hook(c)["secret"]
    body = payload(blob="x" * 20_000)
    r = post_hook(server, "alerts", body, github_headers(secret, body))
    problem(r, 413, "payload_too_large")
    chunked = httpx.post(
        f"{server.url}/hooks/alerts",
        content=iter([body[:5000], body[5000:]]),
        headers=github_headers(secret, body),
    )
    problem(chunked, 413, "payload_too_large")
