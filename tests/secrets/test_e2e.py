"""Named secrets end to end: a real worker process runs `command` agents that print their
secrets; the event log, the stream, the result, the Task JSON, the error and the artifact
show `[redacted]`, never the value (SQLite and PostgreSQL).

The env-referenced value lives only in the worker process's environment: this process (the
control plane) never sees it, so its absence from everything stored proves the worker's own
masking; the stored one is masked twice (the worker, then the control plane at ingest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.secrets.helpers import KEY, fresh
from tests.support import LiveServer, spawn, wait_for
from tests.worker.test_e2e import status_is

pytestmark = pytest.mark.xdist_group("processes")

# Prints both secrets, their digests (proof the values arrived intact) and writes one into an
# artifact; `fail` makes it end with the secret on stderr and a non-zero exit.
SCRIPT = r"""
echo "stored is $MY_SECRET and ref is $REF_SECRET"
printf '%s' "$MY_SECRET" | sha256sum | cut -c1-64
printf '%s' "$REF_SECRET" | sha256sum | cut -c1-64
mkdir -p artifacts; echo "in a file: $MY_SECRET" > artifacts/out.txt
if [ "$PARAM_FAIL" = yes ]; then echo "bad $REF_SECRET" >&2; exit 3; fi
echo "result $MY_SECRET"
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def setup(c: httpx.Client, stored: str) -> None:
    assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
    assert c.put("/secrets/MY_SECRET", json={"value": stored}).status_code == 201
    assert c.put("/secrets/REF_SECRET", json={"env": "WORKER_HELD_VAR"}).status_code == 201
    assert c.put("/secrets/ABSENT_SECRET", json={"env": "NO_SUCH_WORKER_VAR"}).status_code == 201
    common = {"runtime": "command", "default_queue": "q1", "parameters": {"fail": {"default": "no"}}}
    agents = [
        {"name": "leaky", "command": ["bash", "-c", SCRIPT], "secrets": ["MY_SECRET", "REF_SECRET"]},
        {"name": "needs-absent", "command": ["true"], "secrets": ["MY_SECRET", "ABSENT_SECRET"]},
    ]
    for a in agents:
        r = c.post("/agents", json={**common, **a})
        assert r.status_code == 201, r.text


def run(c: httpx.Client, agent: str, **params: str) -> dict[str, Any]:
    tid = c.post("/tasks", json={"agent": agent, "prompt": "go", "parameters": params}).json()["id"]
    return wait_for(lambda: status_is(c, tid, "completed", "failed"), 60, f"{agent} to finish")


def everything(c: httpx.Client, tid: str) -> str:
    """All a reader can get of the task: Task JSON, events, the SSE stream, the artifact."""
    parts = [c.get(f"/tasks/{tid}").text, c.get(f"/tasks/{tid}/events").text]
    parts.append(c.get(f"/tasks/{tid}/stream", headers={"Accept": "text/event-stream"}).text)
    parts.append(c.get(f"/tasks/{tid}/artifacts/out.txt").text)
    return "\n".join(parts)


def test_secrets_reach_the_command_and_are_masked_everywhere(
    server_factory: Any, db_url: str, tmp_path: Path, procs: list[Any]
) -> None:
    server: LiveServer = server_factory(db_url, secret_key=KEY)
    stored, held = fresh("stored"), fresh("held")
    with server.client() as c:
        setup(c, stored)
        procs.append(
            spawn(
                ["-m", "cli.main", "worker", "start", "--queue", "q1"],
                log=tmp_path / "worker.log",
                META_AGENT_URL=server.url,
                META_AGENT_WORKSPACE_ROOT=str(tmp_path / "ws"),
                WORKER_HELD_VAR=held,
            )
        )
        done = run(c, "leaky")
        failed = run(c, "leaky", fail="yes")
        absent = run(c, "needs-absent")
        seen = {t["id"]: everything(c, t["id"]) for t in (done, failed)}

    assert done["status"] == "completed", done
    assert done["result"]["output"].splitlines() == [
        "stored is [redacted] and ref is [redacted]",
        digest(stored),
        digest(held),
        "result [redacted]",
    ]
    assert failed["status"] == "failed" and failed["error"]["code"] == "command_failed"
    assert failed["error"]["message"] == "exit code 3: bad [redacted]"
    for text in seen.values():
        assert stored not in text and held not in text
        assert "in a file: [redacted]" in text and "data: " in text  # the artifact and the stream were read
    assert absent["status"] == "failed" and absent["error"]["code"] == "missing_secret", absent
    assert absent["failure_class"] == "missing_prerequisites"
    assert (
        "ABSENT_SECRET" in absent["error"]["message"] and "NO_SUCH_WORKER_VAR" in absent["error"]["message"]
    )
    assert "MY_SECRET" not in absent["error"]["message"]  # only what is missing is named
