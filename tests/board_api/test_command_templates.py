"""A `command` agent whose template splices a parameter into a larger argument is refused
when saved (create, apply, patch), naming the element; the example catalog passes."""

from __future__ import annotations

from pathlib import Path

import yaml

from kernel.argv import embedded
from tests.board_api.test_api import problem
from tests.support import LiveServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents.yaml"


def agent(command: list[str], **extra: object) -> dict[str, object]:
    return {"name": "pinger", "runtime": "command", "command": command, **extra}


def test_an_embedded_parameter_is_refused_when_saved(server: LiveServer) -> None:
    params = {"host": {"description": "the host"}}
    with server.client() as c:
        for command in (
            ["bash", "-o", "pipefail", "-c", "ping -c1 {host}"],
            ["/usr/bin/env", "bash", "-c", "ping {host}"],
            ["sudo", "bash", "-c", "ping {host}"],
            ["python3", "-c", "print('{prompt}')"],
        ):
            body = problem(c.post("/agents", json=agent(command, parameters=params)), 422, "unsafe_command")
            assert f"command[{len(command) - 1}]" in body["detail"]
            problem(c.put("/agents/pinger", json=agent(command, parameters=params)), 422, "unsafe_command")
        safe = agent(["bash", "-c", 'ping -c1 "$PARAM_HOST"', "{host}"], parameters=params)
        assert c.post("/agents", json=safe).status_code == 201
        # A change is checked against the whole agent: the command, or the parameters it uses.
        problem(
            c.patch("/agents/pinger", json={"command": ["sh", "-ec", "ping {host}"]}), 422, "unsafe_command"
        )
        assert c.patch("/agents/pinger", json={"command": ["sh", "-ec", "echo {port}"]}).status_code == 200
        problem(c.patch("/agents/pinger", json={"parameters": {"port": {}}}), 422, "unsafe_command")
        assert c.get("/agents/pinger").json()["command"] == ["sh", "-ec", "echo {port}"]


def test_the_example_agents_read_parameters_from_the_environment() -> None:
    for item in yaml.safe_load(EXAMPLES.read_text())["agents"]:
        if item.get("command"):
            assert embedded(item["command"], [*(item.get("parameters") or {}), "prompt"]) is None, item[
                "name"
            ]
