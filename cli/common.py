"""What every command shares: the connection to the control plane, `--json`, errors.

The SDK (and with it httpx, ~130 ms to import) is imported only when a command first asks
for a client, so `--help` and the commands that never talk to the server stay quick.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard, cast

import typer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import BaseModel

    from sdk.client import ApiError, ControlPlaneClient

__all__ = [
    "DEFAULT_URL",
    "JsonOption",
    "State",
    "as_dict",
    "as_list",
    "client",
    "escape",
    "is_api_error",
    "parse_params",
    "report_api_error",
    "state",
    "wire",
    "wire_list",
]

# Same default as `Settings.url`; repeated here because importing the settings module pulls
# in pydantic-settings (~150 ms), too much for a list command.
DEFAULT_URL = "http://127.0.0.1:8080"

JsonOption = Annotated[
    bool,
    typer.Option("--json", envvar="META_AGENT_JSON", help="Print machine-readable JSON only."),
]


@dataclass
class State:
    """Root options, kept on the root context for every subcommand."""

    url: str
    api_key: str | None
    timeout: float
    public_url: str | None = None
    # The throw-away queue of an `exec --local` run, while it lasts.
    local_queue: str | None = None
    _client: ControlPlaneClient | None = field(default=None, repr=False)

    def client(self, ctx: typer.Context) -> ControlPlaneClient:
        if self._client is None:
            from sdk.client import ControlPlaneClient

            self._client = ControlPlaneClient(
                url=self.url, api_key=self.api_key, timeout=self.timeout, source="cli"
            )
            # Close the connection pool when the command ends, so sockets never outlive it.
            ctx.find_root().call_on_close(self._close_client)
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if callable(close):
                close()
            self._client = None

    def board_link(self, task_id: str) -> str:
        """Where a person opens this execution on the web board."""
        base = (self.public_url or self.url).rstrip("/")
        return f"{base}/#/tasks/{task_id}"


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # only when a command runs without the root callback
        obj = ctx.find_root().obj = State(url=DEFAULT_URL, api_key=None, timeout=30.0)
    return obj


def client(ctx: typer.Context) -> ControlPlaneClient:
    return state(ctx).client(ctx)


def parse_params(values: list[str] | None) -> dict[str, str]:
    """`--param k=v` values as a dict; values stay strings (the agent's template decides)."""
    params: dict[str, str] = {}
    for raw in values or []:
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(
                f"{raw!r} is not KEY=VALUE (for example --param env=staging)",
                param_hint="'--param'",
            )
        params[key] = value
    return params


def is_api_error(exc: BaseException) -> TypeGuard[ApiError]:
    # If the SDK module was never imported, nothing could have raised its error; looking it
    # up in sys.modules keeps the SDK import off the paths that do not need it.
    module = sys.modules.get("sdk.client")
    return module is not None and isinstance(exc, module.ApiError)


def report_api_error(exc: ApiError, url: str) -> None:
    """One red line on stderr for a failed call; never a traceback."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    code = str(getattr(exc, "code", None) or "error")
    detail = str(getattr(exc, "detail", None) or exc)
    if code == "unreachable":
        where = "" if url in detail else f" (at {url})"
        err.print(
            f"[red]error: {escape(detail)}{escape(where)}; start the control plane with `make run` "
            "or `meta-agent serve`, or point --url / META_AGENT_URL at it[/]"
        )
        return
    err.print(f"[red]error: {escape(detail)} ({escape(code)})[/]")
    if code == "unauthorized":
        err.print("[dim]pass an API key with --api-key or META_AGENT_API_KEY[/]")
    elif code == "timeout":
        err.print("[dim]allow longer with --timeout or META_AGENT_TIMEOUT[/]")


def wire(model: BaseModel) -> dict[str, Any]:
    """An SDK answer as the JSON the API sent: what `--json` prints, and what the views read
    (times as the server wrote them)."""
    return model.model_dump(mode="json")


def wire_list(models: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [wire(m) for m in models]


def as_dict(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else {} (JSON is untyped: the cast names what isinstance found)."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """`value` if it is a JSON array, else []."""
    return cast(list[Any], value) if isinstance(value, list) else []


def escape(text: str) -> str:
    """`text` made safe to put inside rich markup (ids and names come from users)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
