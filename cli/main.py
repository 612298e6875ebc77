"""The `meta-agent` command: the root options, error handling and the command tree.

Every command that talks to the control plane goes through the SDK (`sdk.client`);
none imports the server, the store or litellm, so list commands start in well under 300 ms.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cli.agents import agents_app
from cli.audit import audit_app, export_executions
from cli.common import DEFAULT_URL, State, is_api_error, report_api_error, state
from cli.executions import chat, exec_app, execution_app
from cli.hooks import hooks_app
from cli.keys import keys_app
from cli.mcp import mcp
from cli.ops import db_app, serve, worker_app
from cli.queues import queues_app
from cli.schedules import schedules_app
from cli.secrets import secrets_app

__all__ = ["app"]


class _RootGroup(TyperGroup):
    """Turns SDK errors from any command into one readable line and exit code 1."""

    # typer hands its own Context (a click.Context subclass) to every group it builds.
    def invoke(self, ctx: typer.Context) -> Any:  # pyright: ignore[reportIncompatibleMethodOverride]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not is_api_error(exc):
                raise
            report_api_error(exc, state(ctx).url)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="meta-agent",
    cls=_RootGroup,
    no_args_is_help=True,
    help="Control plane for agentic task executions: run agents, follow executions, manage workers.",
    # Options without an explicit variable still read one: META_AGENT_<COMMAND>_<OPTION>.
    context_settings={"auto_envvar_prefix": "META_AGENT", "help_option_names": ["-h", "--help"]},
    # A crash report must not print local variables: they hold the API key.
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="META_AGENT_URL", help="Control plane URL.", show_default=True)
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="META_AGENT_API_KEY", help="API key (not needed on an open loopback server)."),
    ] = None,
    timeout: Annotated[float, typer.Option(envvar="META_AGENT_TIMEOUT", help="Seconds per request.")] = 30.0,
    public_url: Annotated[
        str | None,
        typer.Option(envvar="META_AGENT_PUBLIC_URL", help="Board URL for links (default: --url)."),
    ] = None,
) -> None:
    ctx.obj = State(url=url, api_key=api_key or None, timeout=timeout, public_url=public_url or None)


app.command("serve")(serve)
app.add_typer(exec_app, name="exec")
app.command("chat")(chat)
app.add_typer(execution_app, name="execution")
app.add_typer(agents_app, name="agents")
app.add_typer(queues_app, name="queues")
app.add_typer(schedules_app, name="schedules")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(hooks_app, name="hooks")
app.add_typer(audit_app, name="audit")
execution_app.command("export")(export_executions)
app.add_typer(worker_app, name="worker")
app.command("mcp")(mcp)
app.add_typer(db_app, name="db")


if __name__ == "__main__":
    app()
