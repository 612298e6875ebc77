"""`serve`, `worker start`, `db upgrade`: run the parts of the system on this machine.

Each imports its part (FastAPI, the worker, SQLAlchemy) inside the command: those imports
cost seconds and only these commands need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import state

__all__ = ["db_app", "serve", "worker_app"]

worker_app = typer.Typer(no_args_is_help=True, help="Run a worker that claims executions from a queue.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        envvar="META_AGENT_DATABASE_URL",
        help="SQLAlchemy URL of the store (default: sqlite:///meta-agent.db).",
        show_default=False,
    ),
]


def serve(
    host: Annotated[
        str | None, typer.Option(envvar="META_AGENT_HOST", help="Address to bind (default: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(envvar="META_AGENT_PORT", help="Port (default: 8080).")] = None,
    database_url: DatabaseUrlOption = None,
    embedded_worker: Annotated[
        bool | None,
        typer.Option(
            "--embedded-worker/--no-embedded-worker",
            envvar="META_AGENT_EMBEDDED_WORKER",
            help="Run a worker inside the server (default: on).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the control plane: API, web board, MCP endpoint (and a worker unless told not to)."""
    from cli.serve import run_server

    run_server(_settings(host=host, port=port, database_url=database_url, embedded_worker=embedded_worker))


# The options of `worker start` (named here to keep the command readable).
_QueueOption = Annotated[
    str, typer.Option("--queue", "-q", envvar="META_AGENT_WORKER_QUEUE", help="Queue to serve.")
]

_ConcurrencyOption = Annotated[
    int, typer.Option(min=1, envvar="META_AGENT_WORKER_CONCURRENCY", help="Executions at once.")
]

_WorkspaceOption = Annotated[
    str,
    typer.Option(envvar="META_AGENT_WORKSPACE_ROOT", help="Where executions get their working directories."),
]

_WorkdirOption = Annotated[
    str | None,
    typer.Option(
        envvar="META_AGENT_WORKER_WORKDIR",
        help="Run every execution in this directory (it must exist) instead of a fresh "
        "workspace per execution; for one local worker at concurrency 1.",
        show_default=False,
    ),
]

_GraceOption = Annotated[
    float,
    typer.Option(
        min=0,
        envvar="META_AGENT_WORKER_GRACE_SECONDS",
        help="On stop, seconds running executions get to finish before being handed back.",
    ),
]

_LlmApiBaseOption = Annotated[
    str | None,
    typer.Option(
        envvar="META_AGENT_LLM_API_BASE",
        help="Base URL of the model provider for llm agents (any OpenAI-compatible server); "
        "default: litellm's own per-provider settings.",
        show_default=False,
    ),
]

_LlmApiKeyOption = Annotated[
    str | None,
    typer.Option(
        envvar="META_AGENT_LLM_API_KEY",
        help="API key for the model provider of llm agents; default: the provider's usual "
        "variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).",
        show_default=False,
    ),
]

_SandboxOption = Annotated[
    str,
    typer.Option(
        envvar="META_AGENT_SANDBOX",
        help="`auto`: agents' processes run sandboxed, or not at all where no sandbox can be had; "
        "`off`: they run with this worker's own rights.",
    ),
]

_SandboxUserOption = Annotated[
    str,
    typer.Option(
        envvar="META_AGENT_SANDBOX_USER", help="When run as root: the user agents' processes run as."
    ),
]


@worker_app.command("start")
def start_worker(
    ctx: typer.Context,
    queue: _QueueOption,
    concurrency: _ConcurrencyOption = 4,
    workspace: _WorkspaceOption = ".meta-agent/workspaces",
    workdir: _WorkdirOption = None,
    grace: _GraceOption = 20.0,
    llm_api_base: _LlmApiBaseOption = None,
    llm_api_key: _LlmApiKeyOption = None,
    sandbox: _SandboxOption = "auto",
    sandbox_user: _SandboxUserOption = "nobody",
) -> None:
    """Claim executions from a queue and run them.

    Ctrl-C lets running executions finish; a second Ctrl-C hands them back to the queue.
    """
    import logging

    from worker.main import run_worker
    from worker.sandbox import Sandbox, configure

    # The worker reports claims, failures and shutdown through logging; show them.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per heartbeat otherwise
    root = state(ctx)
    if workdir is not None and not Path(workdir).is_dir():
        raise typer.BadParameter(f"{workdir} is not a directory", param_hint="'--workdir'")
    try:
        configure(Sandbox(sandbox, sandbox_user))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--sandbox'") from None
    from kernel import loop

    try:
        loop.run(
            run_worker(
                url=root.url,
                api_key=root.api_key,
                queue=queue,
                concurrency=concurrency,
                workspace_root=workspace,
                grace_seconds=grace,
                llm_api_base=llm_api_base,
                llm_api_key=llm_api_key,
                workdir=workdir,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@db_app.command("upgrade")
def upgrade(database_url: DatabaseUrlOption = None) -> None:
    """Apply the store's migrations up to the newest one."""
    from store.migrate import upgrade as run_upgrade

    url = _settings(database_url=database_url).database_url
    run_upgrade(url)
    typer.echo("database is up to date")


def _settings(**overrides: Any) -> Any:
    # Flags given on the command line win; everything else comes from META_AGENT_* as usual.
    from kernel.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})
