"""Teams: the coordinator delegates to member agents through child tasks on workers."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.llm_server import FakeLLM, Gate, text, tool_calls
from tests.support import LiveServer, wait_for
from tests.worker.llm_support import events, llm_agent, tool_events, wait_status, worker_thread


def setup_team(c: httpx.Client) -> None:
    llm_agent(c, "lead", instructions="You lead.")
    llm_agent(c, "alpha", description="Computes part A.", tools=["ask_user"])
    llm_agent(c, "beta", description="Computes part B.")
    r = c.post(
        "/teams",
        json={"name": "squad", "coordinator": "lead", "members": ["alpha", "beta"], "default_queue": "q1"},
    )
    assert r.status_code == 201, r.text


def delegations(when: str) -> object:
    return tool_calls(
        [
            ("delegate", {"agent": "alpha", "prompt": "Compute part A"}, "call_a"),
            ("delegate", {"agent": "beta", "prompt": "Compute part B"}, "call_b"),
        ],
        when=when,
    )


def children(c: httpx.Client, parent: str) -> list[dict]:  # type: ignore[type-arg]
    return [t for t in c.get("/tasks", params={"limit": 50}).json()["items"] if t["parent_id"] == parent]


def test_team_task_delegates_to_two_members_and_composes_the_answer(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(
        delegations("the team task"),
        text("A=1", when="Compute part A"),
        text("B=2", when="Compute part B"),
        text("Together: A=1 and B=2.", when="beta completed"),
    )
    with server.client() as c:
        setup_team(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws", concurrency=3):
        r = c.post("/teams/squad/execute", json={"prompt": "the team task"})
        assert r.status_code == 201, r.text
        tid = r.json()["execution_id"]
        task = wait_status(c, tid, "completed", "failed")
        assert task["status"] == "completed", task
        assert task["result"] == {"output": "Together: A=1 and B=2."}
        kids = {t["agent"]: t for t in children(c, tid)}
        assert set(kids) == {"alpha", "beta"}
        assert kids["alpha"]["result"] == {"output": "A=1"} and kids["beta"]["status"] == "completed"
        tools = tool_events(c, tid)
        assert tools["call_a"]["completed"]["status"] == "success"
        # The members' progress streamed into the coordinator's log.
        assert "A=1" in "".join(tools["call_a"]["output"]) and "B=2" in "".join(tools["call_b"]["output"])
    final = llm.requests[-1]["messages"]
    results = {m["tool_call_id"]: m["content"] for m in final if m["role"] == "tool"}
    assert results["call_a"].startswith("alpha completed") and results["call_a"].endswith("A=1")
    assert results["call_b"].endswith("B=2")
    assert "delegate" in final[0]["content"] and final[0]["role"] == "system"


def test_cancelling_the_team_task_cancels_its_children(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    gates = [Gate(), Gate()]  # the members never finish by themselves
    llm.script(
        delegations("the team task"),
        text("working on A forever", gate=gates[0], when="Compute part A"),
        text("working on B forever", gate=gates[1], when="Compute part B"),
    )
    with server.client() as c:
        setup_team(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws", concurrency=3):
        tid = c.post("/teams/squad/execute", json={"prompt": "the team task"}).json()["execution_id"]
        for gate in gates:
            gate.wait_reached()
        kids = wait_for(
            lambda: [k for k in children(c, tid) if k["status"] == "running"][1:] and children(c, tid),
            10,
            "two running children",
        )
        assert c.post(f"/tasks/{tid}/cancel").status_code == 200
        wait_status(c, tid, "cancelled", timeout=5)
        for kid in kids:
            wait_status(c, kid["id"], "cancelled", timeout=5)
        assert any(e["data"].get("status") == "cancelled" for e in events(c, tid, "status"))


def test_a_members_question_surfaces_on_the_team_task_and_the_answer_reaches_it(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    question = {"question": "Which precision?", "choices": ["low", "high"]}
    llm.script(
        tool_calls(
            [("delegate", {"agent": "alpha", "prompt": "Compute part A"}, "call_a")], when="the team task"
        ),
        tool_calls([("ask_user", question, "call_q")], when="Compute part A"),
        text("A=1.000", when="The user answered: high"),
        text("A is 1.000 (high precision).", when="alpha completed"),
    )
    with server.client() as c:
        setup_team(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws", concurrency=2):
        tid = c.post("/teams/squad/execute", json={"prompt": "the team task"}).json()["execution_id"]
        parent = wait_status(c, tid, "requires_input")
        (kid,) = children(c, tid)
        assert kid["status"] == "requires_input"
        assert parent["pending_input"]["question"] == f"alpha asks (task {kid['id']}): Which precision?"
        assert parent["pending_input"]["choices"] == ["low", "high"]
        assert c.post(f"/tasks/{tid}/input", json={"answer": "high"}).status_code == 200
        task = wait_status(c, tid, "completed", "failed")
        assert task["status"] == "completed", task
        assert task["result"] == {"output": "A is 1.000 (high precision)."}
        kid = c.get(f"/tasks/{kid['id']}").json()
        assert kid["status"] == "completed" and kid["inputs"] == {"call_q": "high"}


def test_a_worker_key_may_create_and_answer_child_tasks_only(server: LiveServer) -> None:
    with server.client() as c:
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"authorization": f"Bearer {admin}"}) as a:
        setup_team(a)
        worker = a.post("/keys", json={"name": "w", "scopes": ["worker"]}).json()["key"]
        parent = a.post("/tasks", json={"team": "squad", "prompt": "p"}).json()["id"]
    with server.client(headers={"authorization": f"Bearer {worker}"}) as w:
        top = w.post("/tasks", json={"agent": "alpha", "prompt": "p"})
        assert top.status_code == 403 and top.json()["code"] == "insufficient_scope"
        # A child needs the parent's lease (issue 12 item 3: naming any task used to do).
        forged = w.post("/tasks", json={"agent": "alpha", "prompt": "p", "parent_id": parent})
        assert forged.status_code == 403 and forged.json()["code"] == "insufficient_scope"
        (held,) = w.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 0}).json()[
            "tasks"
        ]
        child = w.post(
            "/tasks",
            json={"agent": "alpha", "prompt": "p", "parent_id": parent},
            headers={"X-Lease-Token": held["token"]},
        )
        assert child.status_code == 201 and child.json()["parent_id"] == parent
        refused = w.post(f"/tasks/{parent}/input", json={"answer": "x"})
        assert refused.status_code == 403
