"""The Kubiya-style snippet (issue #16 item 6) runs unchanged but for its import line: a
subprocess runs it against a live control plane, and a worker process runs the execution."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from sdk import ControlPlaneClient
from tests.support import ROOT, LiveServer, child_env, wait_for
from tests.worker.test_e2e import start_worker

pytestmark = pytest.mark.xdist_group("processes")

# Exactly the snippet, after the one line that differs (the import) and the two
# names it takes as given.
SNIPPET = """
client = ControlPlaneClient(api_key=os.environ.get("META_AGENT_API_KEY"),
                            base_url="http://127.0.0.1:8080")
result = client.agents.execute(agent_id, {"worker_queue_id": queue_id,
    "prompt": "Check Kubernetes cluster health", "parameters": {"namespace": "default"}})
print(result.get("execution_id"))
"""
KUBECTL = {
    "name": "k8s-health",
    "description": "Checks a namespace",
    "runtime": "command",
    "command": [
        "python3",
        "-c",
        "import sys; print('checked', sys.argv[1], '-', sys.argv[2])",
        "{namespace}",
        "{prompt}",
    ],
    "parameters": {"namespace": {"required": True, "description": "the namespace"}},
}


def script(server: LiveServer, agent_id: str, queue_id: str) -> str:
    # The snippet names 127.0.0.1:8080; the test's server has a free port of its own.
    body = SNIPPET.replace("http://127.0.0.1:8080", server.url)
    head = (
        f"import os\nfrom sdk import ControlPlaneClient\nagent_id = {agent_id!r}\nqueue_id = {queue_id!r}\n"
    )
    return head + textwrap.dedent(body)


def test_the_kubiya_snippet_runs_unchanged(server: LiveServer, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    with server.client() as c:
        queue = c.post("/worker-queues", json={"name": "k8s", "environment": "staging"}).json()
        c.post("/worker-queues", json={"name": "other"})  # two queues: the id must pick k8s
        agent = c.post("/agents", json=KUBECTL).json()
        procs.append(start_worker(server.url, tmp_path / "ws", queue="k8s"))
        run = subprocess.run(
            [sys.executable, "-c", script(server, agent["id"], queue["id"])],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        execution_id = run.stdout.strip()
        task = wait_for(
            lambda: (t := c.get(f"/tasks/{execution_id}").json())["status"] in ("completed", "failed") and t,
            30,
            "the worker to run the execution",
        )
        assert task["status"] == "completed", task
        assert task["agent"] == "k8s-health" and task["queue"] == "k8s" and task["source"] == "sdk"
        assert task["parameters"] == {"namespace": "default"}
        assert task["result"]["output"].strip() == "checked default - Check Kubernetes cluster health"


def test_url_and_base_url_are_both_accepted(server: LiveServer) -> None:
    with server.client() as c:
        c.post("/worker-queues", json={"name": "q1"})
        c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"})
    for kw in (
        {"url": server.url},
        {"base_url": server.url},
        {"url": server.url, "base_url": server.url + "/"},
    ):
        with ControlPlaneClient(**kw) as client:
            result = client.agents.execute("echo", {"prompt": "hi"})
            # The pydantic API is unchanged; the dict-like reading is extra.
            assert result.execution_id == result.get("execution_id") == result["execution_id"]
            assert result.task.status == "pending" and result.get("task")["status"] == "pending"
            assert result.get("nope", 3) == 3 and "status" in result and "nope" not in result
            assert dict(result)["execution_id"] == result.execution_id
    with pytest.raises(TypeError, match="base_url"):
        ControlPlaneClient(url=server.url, base_url="http://elsewhere:1")
    with ControlPlaneClient(base_url=server.url) as client, pytest.raises(KeyError):
        _ = client.executions.get(result.execution_id)["nope"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200
