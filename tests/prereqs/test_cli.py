"""`meta-agent agents apply|get|check` with prerequisites, against a real control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from cli.main import app
from tests.prereqs.test_api import CAN, CANNOT, claim
from tests.support import LiveServer

MANIFEST = """
queues: [{name: q1, environment: prod}]
agents:
  - name: deployer
    runtime: noop
    default_queue: q1
    requires:
      bins: [kubectl]
      env: [KUBECONFIG]
      environment: prod
"""


def cli(server: LiveServer, *args: str) -> Result:
    return CliRunner().invoke(app, ["--url", server.url, *args], env={"COLUMNS": "200"})


def test_check_says_what_is_missing_where_and_exits_1_until_a_worker_can(
    server_factory: Any, db_url: str, tmp_path: Path
) -> None:
    server: LiveServer = server_factory(db_url)
    (tmp_path / "agents.yaml").write_text(MANIFEST)
    applied = cli(server, "agents", "apply", "-f", str(tmp_path / "agents.yaml"))
    assert applied.exit_code == 0, applied.output
    shown = cli(server, "agents", "get", "deployer")
    assert "requires" in shown.stdout and "kubectl" in shown.stdout, shown.output

    nobody = cli(server, "agents", "check", "deployer")
    assert nobody.exit_code == 1 and "no worker is live" in nobody.stdout, nobody.output

    with server.client() as c:
        claim(c, "w-small", capabilities=CANNOT)
    lacking = cli(server, "agents", "check", "deployer")
    assert lacking.exit_code == 1, lacking.output
    assert "kubectl, $KUBECONFIG" in lacking.stdout and "no live worker can run it" in lacking.stdout
    as_json = cli(server, "agents", "check", "deployer", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["queues"]["q1"] == {
        "agent": "deployer",
        "live_workers": 1,
        "workers": [],
        "missing": ["bin:kubectl", "env:KUBECONFIG"],
    }

    with server.client() as c:
        claim(c, "w-big", capabilities=CAN)
    able = cli(server, "agents", "check", "deployer", "--json")
    assert able.exit_code == 0, able.output
    assert json.loads(able.stdout)["runnable"] is True
    assert json.loads(able.stdout)["queues"]["q1"]["workers"] == ["w-big"]
    missing = cli(server, "agents", "check", "nope")
    assert missing.exit_code != 0 and "Traceback" not in missing.output and "nope" in missing.output
