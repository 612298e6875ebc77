"""An agent's policy is checked when the agent is saved: a typo is a 422 naming it, not a
task that fails later; a valid policy is stored as written."""

from __future__ import annotations

import pytest

from tests.support import LiveServer

BASE = {"name": "ops", "runtime": "llm", "model": "openai/x", "tools": ["bash", "http_request"]}


@pytest.mark.parametrize(
    ("policy", "field", "words"),
    [
        ({"max_step": 2}, "policy.max_step", "Extra inputs"),
        ({"deny_commands": ["("]}, "policy.deny_commands", "not a valid regular expression"),
        ({"http_allow": ["a/b/c"]}, "policy", "http_allow: 'a/b/c'"),
        ({"max_cost": -1}, "policy.max_cost", "greater than or equal"),
    ],
)
def test_a_bad_policy_is_refused_and_names_the_problem(
    server: LiveServer, policy: dict, field: str, words: str
) -> None:
    with server.client() as c:
        r = c.post("/agents", json={**BASE, "policy": policy})
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == "validation_error"
        assert any(e["field"] == field and words in e["message"] for e in problem["errors"]), problem
        assert c.get("/agents").json()["items"] == []  # nothing stored


def test_a_valid_policy_is_stored_as_written(server: LiveServer) -> None:
    policy = {"allowed_tools": ["bash"], "max_steps": 5, "http_allow": ["*.example.com", "10.0.0.0/8"]}
    with server.client() as c:
        assert c.post("/agents", json={**BASE, "policy": policy}).status_code == 201
        assert c.get("/agents/ops").json()["policy"] == policy
        assert c.patch("/agents/ops", json={"policy": {"max_seconds": 30}}).status_code == 200
        assert c.get("/agents/ops").json()["policy"] == {"max_seconds": 30}
        r = c.patch("/agents/ops", json={"policy": {"deny_commands": ["[unclosed"]}})
        assert r.status_code == 422
        assert c.get("/agents/ops").json()["policy"] == {"max_seconds": 30}
