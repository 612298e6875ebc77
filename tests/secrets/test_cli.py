"""`meta-agent secrets set|list|delete` against a real control plane (SQLite and PostgreSQL):
the value from stdin, `--from-env`, `--json`, and values never printed back."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from cli.main import app
from tests.secrets.helpers import KEY, fresh
from tests.support import LiveServer


def cli(server: LiveServer, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--url", server.url, *args], input=stdin, env={"COLUMNS": "200"})


def test_set_from_stdin_list_and_delete(server_factory: Any, db_url: str) -> None:
    server = server_factory(db_url, secret_key=KEY)
    value = fresh()

    made = cli(server, "secrets", "set", "DEPLOY_TOKEN", "--json", stdin=value + "\n")
    ref = cli(server, "secrets", "set", "FROM_WORKER", "--from-env", "WORKER_VAR")
    listed = cli(server, "secrets", "list", "--json")
    table = cli(server, "secrets", "list")
    gone = cli(server, "secrets", "delete", "FROM_WORKER", "--json")

    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["kind"] == "stored" and value not in made.output
    assert ref.exit_code == 0 and "WORKER_VAR" in ref.stdout, ref.output
    assert [(i["name"], i["kind"], i["env"]) for i in json.loads(listed.stdout)] == [
        ("DEPLOY_TOKEN", "stored", None),
        ("FROM_WORKER", "env", "WORKER_VAR"),
    ]
    assert "DEPLOY_TOKEN" in table.stdout and value not in table.stdout + listed.stdout
    assert json.loads(gone.stdout) == {"name": "FROM_WORKER", "deleted": True}
    with server.client() as c:  # what stdin gave, minus its newline, is what a worker gets
        c.post("/worker-queues", json={"name": "q1"})
        c.post(
            "/agents",
            json={"name": "a", "runtime": "noop", "default_queue": "q1", "secrets": ["DEPLOY_TOKEN"]},
        )
        tid = c.post("/tasks", json={"agent": "a", "prompt": "p"}).json()["id"]
        token = c.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 0}).json()["tasks"][
            0
        ]["token"]
        assert c.post(f"/tasks/{tid}/secrets", json={"token": token}).json()["values"] == {
            "DEPLOY_TOKEN": value
        }
    shown = cli(server, "agents", "get", "a")
    assert "secrets" in shown.stdout and "DEPLOY_TOKEN" in shown.stdout and value not in shown.stdout


def test_errors_name_the_problem(server_factory: Any, db_url: str) -> None:
    server = server_factory(db_url)  # no META_AGENT_SECRET_KEY

    no_key = cli(server, "secrets", "set", "DEPLOY_TOKEN", stdin=fresh())
    empty = cli(server, "secrets", "set", "DEPLOY_TOKEN", stdin="")
    missing = cli(server, "secrets", "delete", "NOPE")

    assert no_key.exit_code == 1 and "META_AGENT_SECRET_KEY" in no_key.output
    assert empty.exit_code == 2 and "value is empty" in empty.output
    assert missing.exit_code == 1 and "NOPE" in missing.output and "Traceback" not in missing.output


def test_a_value_is_never_an_argument(server_factory: Any, db_url: str) -> None:
    server = server_factory(db_url, secret_key=KEY)
    value = fresh()

    as_argument = cli(server, "secrets", "set", "DEPLOY_TOKEN", value)

    assert as_argument.exit_code == 2 and "unexpected extra argument" in as_argument.output.lower()
    assert json.loads(cli(server, "secrets", "list", "--json").stdout) == []
