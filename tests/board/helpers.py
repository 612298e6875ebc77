"""A raw worker over the HTTP protocol, so tests control every event a task emits."""

from __future__ import annotations

from typing import Any

import httpx


def setup_catalog(c: httpx.Client, queue: str = "q1", agents: tuple[str, ...] = ("helper",)) -> None:
    assert c.post("/worker-queues", json={"name": queue}).status_code == 201
    for name in agents:
        # A command agent nobody runs: its tasks wait in Pending until the test claims them.
        body = {"name": name, "runtime": "command", "command": ["true"], "default_queue": queue}
        assert c.post("/agents", json=body).status_code == 201, name


class RawWorker:
    """Claims a task and reports for it exactly as a worker process would."""

    def __init__(self, c: httpx.Client, queue: str = "q1", worker_id: str = "test-worker") -> None:
        self.c, self.queue, self.worker_id = c, queue, worker_id
        self.tokens: dict[str, str] = {}

    def claim(self, task_id: str) -> dict[str, Any]:
        body = {
            "worker_id": self.worker_id,
            "max_tasks": 1,
            "wait_seconds": 5,
            "name": "raw-worker",
            "hostname": "test-host",
            "version": "test",
        }
        got = self.c.post(f"/worker-queues/{self.queue}/claim", json=body).json()["tasks"]
        assert [t["task"]["id"] for t in got] == [task_id], got
        self.tokens[task_id] = got[0]["token"]
        return got[0]["task"]  # type: ignore[no-any-return]

    def events(
        self, task_id: str, *events: tuple[str, dict[str, Any]], phase: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token": self.tokens[task_id],
            "events": [{"kind": k, "data": d} for k, d in events],
        }
        if phase:
            body["phase"] = phase
        r = self.c.post(f"/tasks/{task_id}/events", json=body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def ask(self, task_id: str, question: str, choices: list[str] | None = None) -> None:
        body = {"token": self.tokens[task_id], "question": question, "choices": choices, "key": "answer"}
        assert self.c.post(f"/tasks/{task_id}/request-input", json=body).status_code == 200

    def complete(self, task_id: str, result: Any = None) -> None:
        r = self.c.post(f"/tasks/{task_id}/complete", json={"token": self.tokens[task_id], "result": result})
        assert r.status_code == 200, r.text

    def fail(self, task_id: str, code: str = "boom", message: str = "it broke") -> dict[str, Any]:
        body = {"token": self.tokens[task_id], "error": {"code": code, "message": message}}
        r = self.c.post(f"/tasks/{task_id}/fail", json=body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def create(c: httpx.Client, prompt: str, agent: str = "helper", **kw: Any) -> str:
    r = c.post("/tasks", json={"agent": agent, "prompt": prompt, **kw})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]
