"""`agents`, `queues`, `keys`, the local process commands, and what the CLI imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.cli.test_cli_standin import (
    StandIn,
    run,
    standin_fixture,  # noqa: F401  (pytest finds the `standin` fixture among this module's names)
)

# --- agents, queues, keys ----------------------------------------------------------------


def test_agents_list_get_json(standin: StandIn) -> None:
    listed = run(standin, "agents", "list", "--json")
    got = run(standin, "agents", "get", "echo", "--json")
    table = run(standin, "agents", "list")

    assert {a["name"] for a in json.loads(listed.stdout)} == {"echo", "broken", "asker"}
    assert json.loads(got.stdout)["name"] == "echo"
    assert "the echo agent" in table.stdout


def test_agents_apply_creates_queues_then_agents(standin: StandIn, tmp_path: Path) -> None:
    manifest = tmp_path / "agents.yaml"
    manifest.write_text(
        "queues:\n"
        "  - name: default\n"
        "  - {name: gpu, description: big boxes}\n"
        "agents:\n"
        "  - {name: echo, runtime: noop}\n"
        "  - name: k8s-health\n"
        "    runtime: command\n"
        "    command: [kubectl, get, nodes]\n"
    )

    result = run(standin, "agents", "apply", "-f", str(manifest), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "queues": [{"name": "default", "action": "exists"}, {"name": "gpu", "action": "created"}],
        "agents": [{"name": "echo", "action": "updated"}, {"name": "k8s-health", "action": "created"}],
    }
    assert standin.agents["k8s-health"]["command"] == ["kubectl", "get", "nodes"]
    assert standin.queues["gpu"]["description"] == "big boxes"
    human = run(standin, "agents", "apply", "-f", str(manifest))
    assert "agent k8s-health updated" in human.stdout


def test_agents_apply_bad_file_is_a_usage_error(standin: StandIn, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [ {name: x\n")

    result = run(standin, "agents", "apply", "-f", str(bad))
    missing = run(standin, "agents", "apply", "-f", str(tmp_path / "nope.yaml"))

    assert result.exit_code == 2 and "not valid YAML" in result.output
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert standin.requests == []


def test_queues_list_and_create(standin: StandIn) -> None:
    created = run(standin, "queues", "create", "gpu", "--environment", "prod", "--json")
    listed = run(standin, "queues", "list")

    assert json.loads(created.stdout)["environment"] == "prod"
    assert re.search(r"gpu\s+prod\s+1\s+4\s+2\s+1", listed.stdout), listed.stdout


def test_keys_create_shows_the_key_once_with_a_warning(standin: StandIn) -> None:
    created = run(standin, "keys", "create", "ci", "--scope", "operator", "-s", "viewer")
    no_scope = run(standin, "keys", "create", "ci")
    bad_scope = run(standin, "keys", "create", "ci", "--scope", "root")

    assert created.exit_code == 0
    assert created.stdout.strip() == "ma_1234_secret"
    assert "cannot be shown again" in " ".join(created.stderr.split())
    (key,) = standin.keys.values()
    assert key["scopes"] == ["operator", "viewer"]
    assert no_scope.exit_code == 2 and bad_scope.exit_code == 2
    listed = run(standin, "keys", "list", "--json")
    assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
    revoked = run(standin, "keys", "revoke", key["id"])
    assert revoked.exit_code == 0 and standin.keys == {}


def test_keys_create_binds_a_worker_key_to_queues_and_list_shows_them(standin: StandIn) -> None:
    created = run(standin, "keys", "create", "gpu-1", "--scope", "worker", "--queue", "gpu", "-q", "gpu-b")
    listed = run(standin, "keys", "list")

    assert created.exit_code == 0, created.output
    (key,) = standin.keys.values()
    assert key["queues"] == ["gpu", "gpu-b"]
    assert re.search(r"gpu-1\s+ma_1234\s+worker\s+gpu, gpu-b", listed.stdout), listed.stdout


# --- startup cost --------------------------------------------------------------------------

HEAVY = ("litellm", "sqlalchemy", "sqlmodel", "fastapi", "uvicorn", "store", "worker", "pydantic_settings")
LOADED = "import json, sys; print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"


def _heavy_modules(code: str, env: dict[str, str] | None = None) -> list[str]:
    probe = code + "\n" + LOADED.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_cli_loads_nothing_heavy() -> None:
    assert _heavy_modules("import cli.main") == []


def test_execution_list_loads_nothing_heavy(standin: StandIn) -> None:
    code = (
        "import io, contextlib\n"
        "from cli.main import app\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = app(['--url', {standin.url!r}, 'execution', 'list'], standalone_mode=False)\n"
        "assert code in (None, 0), code"
    )
    assert _heavy_modules(code) == []
    method, path, _, _ = standin.requests[-1]
    assert (method, path) == ("GET", "/api/v1/tasks")


# --- local processes: the flags reach the entry points ------------------------------------


def test_serve_builds_settings_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.serve

    seen: list[Any] = []
    monkeypatch.setattr(cli.serve, "run_server", seen.append)
    env = {"META_AGENT_PORT": "9191", "META_AGENT_EMBEDDED_WORKER": None, "META_AGENT_HOST": None}

    result = CliRunner().invoke(
        app, ["serve", "--no-embedded-worker", "--database-url", "sqlite://"], env=env
    )

    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert (settings.port, settings.embedded_worker, settings.database_url) == (9191, False, "sqlite://")
    assert settings.host == "127.0.0.1"


def test_worker_start_passes_the_connection_and_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.main

    seen: list[dict[str, Any]] = []

    async def fake_run_worker(**kwargs: Any) -> None:
        seen.append(kwargs)

    monkeypatch.setattr(worker.main, "run_worker", fake_run_worker)
    env = {
        "META_AGENT_API_KEY": "k1",
        "META_AGENT_WORKSPACE_ROOT": None,
        "META_AGENT_WORKER_CONCURRENCY": None,
        "META_AGENT_LLM_API_BASE": "http://llm:1/v1",
        "META_AGENT_LLM_API_KEY": None,
        "META_AGENT_WORKER_WORKDIR": None,
    }

    result = CliRunner().invoke(app, ["--url", "http://cp:1", "worker", "start", "-q", "gpu"], env=env)

    assert result.exit_code == 0, result.output
    assert seen == [
        {
            "url": "http://cp:1",
            "api_key": "k1",
            "queue": "gpu",
            "concurrency": 4,
            "workspace_root": ".meta-agent/workspaces",
            "grace_seconds": 20.0,
            "llm_api_base": "http://llm:1/v1",
            "llm_api_key": None,
            "workdir": None,
        }
    ]


def test_db_upgrade_uses_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    import store.migrate

    seen: list[str] = []
    monkeypatch.setattr(store.migrate, "upgrade", seen.append)

    result = CliRunner().invoke(app, ["db", "upgrade"], env={"META_AGENT_DATABASE_URL": "sqlite:///x.db"})

    assert result.exit_code == 0, result.output
    assert seen == ["sqlite:///x.db"]


def test_agents_list_at_80_columns_keeps_every_name_whole(standin: StandIn) -> None:
    # The key column must never collapse to "…"; the description gives way instead.
    standin.agents["kubernetes-cluster-health"] = standin.agent_out(
        "kubernetes-cluster-health",
        {
            "id": "a-k8s",
            "runtime": "llm",
            "model": "openai/gpt-4.1-mini-2025-04-14",
            "default_queue": "production-east-1",
            "description": "Checks nodes, pods and events across every namespace and reports what is wrong "
            * 2,
        },
    )
    narrow = run(standin, "agents", "list", columns=80)

    assert narrow.exit_code == 0, narrow.output
    for name in ("echo", "broken", "asker", "kubernetes-cluster-health"):
        assert name in narrow.stdout
    assert [line for line in narrow.stdout.splitlines() if len(line) > 80] == [], narrow.stdout
