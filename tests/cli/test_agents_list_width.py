"""`meta-agent agents list` on a narrow terminal (issue #16 item 7): the name, which people
type next, never collapses to "…"; the description (and then the other columns) give way."""

from __future__ import annotations

import pytest

from tests.cli.test_cli_standin import run
from tests.support import LiveServer

LONG = "kubernetes-cluster-health-checker"
DESCRIPTION = "Checks the health of every node and pod in a Kubernetes cluster and reports back"


@pytest.mark.parametrize("columns", [80, 40])
def test_the_name_never_collapses_and_the_description_gives_way(server: LiveServer, columns: int) -> None:
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        agents = [
            {"name": LONG, "runtime": "command", "command": ["python3", "-c", "print(1)", "{prompt}"],
             "description": DESCRIPTION, "default_queue": "q1"},
            {"name": "echo", "runtime": "llm", "model": "openai/a-rather-long-model-name-here",
             "description": "Echoes"},
        ]  # fmt: skip
        for agent in agents:
            assert c.post("/agents", json=agent).status_code == 201

    result = run(None, "agents", "list", url=server.url, columns=columns)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), "\n" + result.stdout
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert set(rows) == {LONG, "echo"}  # whole names, each at the start of its row
    assert DESCRIPTION not in result.stdout and "Che" in rows[LONG] and "…" in rows[LONG]
    assert ("MODEL / COMMAND" in lines[0]) == (columns == 80)  # at 40 the middle column goes
