"""A control plane stand-in for the CLI tests, on a real socket (no tests in here).

It implements only the routes the commands call, with the shapes of docs/protocol.md; it is
the process edge, so the CLI and the SDK under it run for real. Tests take the `standin`
fixture (import it next to `run`) and call `run(standin, *args)`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from cli.main import app

TERMINAL = {"completed", "failed", "cancelled"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class StandIn:
    """In-memory control plane. Tasks for agent `echo` complete at once, `broken` fails,
    `asker` asks a question and completes once answered."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.closing = False
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.agents: dict[str, dict[str, Any]] = {
            name: self.agent_out(name, {"runtime": "noop", "description": f"the {name} agent"})
            for name in ("echo", "broken", "asker")
        }
        self.queues: dict[str, dict[str, Any]] = {"default": self._queue("default")}
        self.keys: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.answers: list[str] = []
        # When set, a GET of a task waiting for input answers it (as a person on the board would).
        self.board_answer: str | None = None
        self.url = ""  # set once the socket is bound

    @staticmethod
    def agent_out(name: str, body: dict[str, Any]) -> dict[str, Any]:
        """An agent as the API answers it (`AgentOut`): every field, defaults filled in."""
        agent = {
            "id": str(uuid.uuid4()),
            "description": "",
            "model": None,
            "instructions": None,
            "command": None,
            "parameters": {},
            "tools": [],
            "mcp_servers": [],
            "policy": {},
            "provider": {},
            "default_queue": None,
            "timeout_seconds": 600,
            "risky": False,
            "created_at": _now(),
            "updated_at": _now(),
        }
        return {**agent, **body, "name": name}

    @staticmethod
    def _queue(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "name": name,
            "description": extra.get("description", ""),
            "environment": extra.get("environment", "default"),
            "active_workers": 1,
            "capacity": 4,
            "pending_tasks": 2,
            "running_tasks": 1,
            "created_at": _now(),
        }

    def add_task(self, agent: str, prompt: str, **extra: Any) -> dict[str, Any]:
        if agent not in self.agents:
            raise Problem(404, "agent_not_found", f"agent {agent} not found")
        task_id = str(uuid.uuid4())
        task = {
            "id": task_id,
            "agent": agent,
            "team": None,
            "queue": extra.get("queue") or "default",
            "prompt": prompt,
            "parameters": extra.get("parameters") or {},
            "source": extra.get("source") or "api",
            "requested_by": None,
            "parent_id": None,
            "retry_of": extra.get("retry_of"),
            "status": "pending",
            "phase": None,
            "attempt": 0,
            "max_attempts": 3,
            "worker_id": None,
            "lease_expires_at": None,
            "cancel_requested": False,
            "result": None,
            "error": None,
            "pending_input": None,
            "inputs": {},
            "usage": {},
            "last_seq": 0,
            "created_at": _now(),
            "updated_at": _now(),
            "started_at": None,
            "finished_at": None,
            "duration_seconds": None,
        }
        self.tasks[task_id] = task
        self.events[task_id] = []
        if agent == "echo":
            self._run(task_id, [("log", {"stream": "stdout", "line": "hello from echo"})])
            self._emit(task_id, "message_delta", {"text": "Hel"})
            self._emit(task_id, "message_delta", {"text": "lo there"})
            self._emit(task_id, "message", {"role": "assistant", "text": "Hello there"})
            self._emit(
                task_id, "tool_started", {"tool_call_id": "c1", "name": "shell", "arguments": {"cmd": "ls"}}
            )
            self._emit(
                task_id,
                "tool_completed",
                {"tool_call_id": "c1", "name": "shell", "status": "success", "duration_ms": 200},
            )
            self._finish(task_id, "completed", result="Hello there")
        elif agent == "broken":
            self._run(task_id, [("log", {"level": "error", "message": "boom"})])
            self._finish(task_id, "failed", error={"code": "agent_error", "message": "it broke"})
        elif agent == "asker":
            self._run(task_id, [])
            pending = {
                "question": "Which environment?",
                "choices": ["staging", "production"],
                "key": "answer",
            }
            self._emit(task_id, "input_requested", pending)
            task["pending_input"] = pending
            self._status(task_id, "requires_input")
        return task

    def _emit(self, task_id: str, kind: str, data: dict[str, Any]) -> None:
        task = self.tasks[task_id]
        task["last_seq"] += 1
        event = {
            "task_id": task_id,
            "seq": task["last_seq"],
            "kind": kind,
            "data": data,
            "attempt": task["attempt"],
            "created_at": _now(),
        }
        with self.cond:  # re-entrant: routes already hold it, tests seeding tasks do not
            self.events[task_id].append(event)
            self.cond.notify_all()

    def _status(self, task_id: str, status: str) -> None:
        task = self.tasks[task_id]
        data = {"status": status, "from": task["status"]}
        if status == "failed":
            data["error"] = task["error"]
        self._emit(task_id, "status", data)
        task["status"] = status

    def _run(self, task_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.tasks[task_id]["attempt"] += 1
        self._status(task_id, "running")
        for kind, data in events:
            self._emit(task_id, kind, data)

    def _finish(self, task_id: str, status: str, **fields: Any) -> None:
        self.tasks[task_id].update(fields, finished_at=_now(), duration_seconds=1.5)
        self._status(task_id, status)

    def answer(self, task_id: str, answer: str) -> dict[str, Any]:
        task = self.task(task_id)
        if task["status"] != "requires_input":
            raise Problem(
                409, "invalid_transition", f"task {task_id} is {task['status']}, not requires_input"
            )
        self.answers.append(answer)
        task["pending_input"] = None
        self._emit(task_id, "input_received", {"key": "answer", "answer": answer})
        self._status(task_id, "pending")
        self._run(task_id, [("message", {"role": "assistant", "text": f"deploying to {answer}"})])
        self._finish(task_id, "completed", result={"text": f"deployed to {answer}"})
        return task

    def task(self, task_id: str) -> dict[str, Any]:
        if task_id not in self.tasks:
            raise Problem(404, "task_not_found", f"task {task_id} not found")
        return self.tasks[task_id]

    # --- routes ---------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, query, body))
        parts = [unquote(p) for p in path.removeprefix("/api/v1/").split("/")]
        arg = {k: v[-1] for k, v in query.items()}
        match method, parts:
            case "GET", ["tasks"]:
                items = [t for t in reversed(self.tasks.values()) if self._matches(t, arg)]
                return 200, {"items": items[: int(arg.get("limit", 50))], "next_cursor": None}
            case "POST", ["tasks"]:
                extra = {k: v for k, v in body.items() if k not in ("agent", "prompt")}
                task = self.add_task(body["agent"], body["prompt"], **extra)
                return 201, task
            case "GET", ["tasks", task_id]:
                task = self.task(task_id)
                if task["status"] == "requires_input" and self.board_answer is not None:
                    snapshot = json.loads(json.dumps(task))
                    self.answer(task_id, self.board_answer)
                    return 200, snapshot
                return 200, task
            case "GET", ["tasks", task_id, "events"]:
                task = self.task(task_id)
                after = int(arg.get("after", 0))
                items = [e for e in self.events[task_id] if e["seq"] > after]
                return 200, {"items": items, "last_seq": task["last_seq"], "status": task["status"]}
            case "POST", ["tasks", task_id, "cancel"]:
                task = self.task(task_id)
                if task["status"] in TERMINAL:
                    raise Problem(409, "invalid_transition", f"task {task_id} is {task['status']}")
                self._finish(task_id, "cancelled")
                return 200, task
            case "POST", ["tasks", task_id, "retry"]:
                old = self.task(task_id)
                return 201, self.add_task(old["agent"], old["prompt"], retry_of=task_id, source="cli")
            case "POST", ["tasks", task_id, "input"]:
                return 200, self.answer(task_id, body["answer"])
            case "GET", ["agents"]:
                return 200, {"items": list(self.agents.values())}
            case "GET", ["agents", name]:
                if name not in self.agents:
                    raise Problem(404, "agent_not_found", f"agent {name} not found")
                return 200, self.agents[name]
            case "PUT", ["agents", name]:
                self.agents[name] = self.agent_out(name, body)
                return 200, self.agents[name]
            case "GET", ["worker-queues"]:
                return 200, {"items": list(self.queues.values())}
            case "POST", ["worker-queues"]:
                if body["name"] in self.queues:
                    raise Problem(409, "name_taken", f"queue {body['name']} exists")
                self.queues[body["name"]] = self._queue(**body)
                return 201, self.queues[body["name"]]
            case "POST", ["keys"]:
                key = {
                    "id": str(uuid.uuid4()),
                    "name": body["name"],
                    "prefix": "ma_1234",
                    "scopes": body["scopes"],
                    "queues": body.get("queues", []),
                    "created_at": _now(),
                    "revoked_at": None,
                }
                self.keys[key["id"]] = key
                return 201, {**key, "key": "ma_1234_secret"}
            case "GET", ["keys"]:
                return 200, {"items": list(self.keys.values())}
            case "DELETE", ["keys", key_id]:
                return 200, {**self.keys.pop(key_id), "revoked_at": _now()}
        raise Problem(404, "not_found", f"no route {method} {path}")

    @staticmethod
    def _matches(task: dict[str, Any], arg: dict[str, str]) -> bool:
        return all(task.get(k) == arg[k] for k in ("status", "agent", "queue", "source") if k in arg)

    def stream(self, task_id: str, after: int, write: Any) -> None:
        """SSE as the protocol has it: `id`/`event`/`data` per event, then `event: end`."""
        with self.cond:
            self.task(task_id)
            while not self.closing:
                new = [e for e in self.events[task_id] if e["seq"] > after]
                if new:
                    for e in new:
                        write(f"id: {e['seq']}\nevent: {e['kind']}\ndata: {json.dumps(e)}\n\n")
                        after = e["seq"]
                    continue
                task = self.tasks[task_id]
                if task["status"] in TERMINAL:
                    write(f"event: end\ndata: {json.dumps(task)}\n\n")
                    return
                self.cond.wait(timeout=5)


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        standin = self.server.standin
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        try:
            if url.path.endswith("/stream"):
                task_id = unquote(url.path.split("/")[-2])
                after = int(query.get("after", [self.headers.get("Last-Event-ID") or 0])[-1])
                with standin.cond:
                    standin.task(task_id)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()

                def write(text: str) -> None:
                    self.wfile.write(text.encode())
                    self.wfile.flush()

                standin.stream(task_id, after, write)
                return
            with standin.cond:
                status, data = standin.route(self.command, url.path, query, body)
            payload = b"" if data is None else json.dumps(data).encode()
            content_type = "application/json"
        except Problem as p:
            status = p.status
            content_type = "application/problem+json"
            problem = {
                "type": "about:blank",
                "title": p.code,
                "status": p.status,
                "detail": p.detail,
                "code": p.code,
            }
            payload = json.dumps(problem).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: StandIn) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.standin = standin


@pytest.fixture(name="standin")
def standin_fixture() -> Iterator[StandIn]:
    """The stand-in serving on a free port; test modules import this to use `standin`."""
    standin = StandIn()
    server = Server(standin)
    # A short poll interval only makes shutdown at teardown quick.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield standin
    finally:
        with standin.cond:
            standin.closing = True
            standin.cond.notify_all()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run(
    standin: StandIn | None, *args: str, url: str | None = None, input: str | None = None, columns: int = 200
) -> Any:
    env = {
        "META_AGENT_URL": url or (standin.url if standin else None),
        "META_AGENT_API_KEY": None,
        "META_AGENT_JSON": None,
        "META_AGENT_QUEUE": None,
        "META_AGENT_PUBLIC_URL": None,
        "COLUMNS": str(columns),
    }
    return CliRunner().invoke(app, list(args), env=env, input=input)
