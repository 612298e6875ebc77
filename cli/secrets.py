"""`secrets set|list|delete`: named secrets that agents' processes get as environment variables.

A value is read from stdin or typed at a hidden prompt, never from an argument: arguments
land in shell history and in every process listing. `--from-env VAR` stores no value at all,
only the name of a variable that each worker reads from its own environment.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.common import JsonOption, client, escape, wire, wire_list
from cli.output import age, console, print_json, table

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    no_args_is_help=True,
    help="Named secrets for agents (admin): set, list (names only), delete. Values never come back.",
)

NameArg = Annotated[str, typer.Argument(help="Secret name; agents' processes see it as this variable.")]


def _read_value() -> str:
    """The value from stdin (piped; one trailing newline dropped) or a hidden prompt."""
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    else:
        value = typer.prompt("Value", hide_input=True, confirmation_prompt=True, err=True)
    if not value:
        raise typer.BadParameter("the value is empty: pipe it on stdin or type it at the prompt")
    return value


@secrets_app.command("set")
def set_secret(
    ctx: typer.Context,
    name: NameArg,
    from_env: Annotated[
        str | None,
        typer.Option(
            "--from-env",
            metavar="VAR",
            help="Store no value: each worker reads it from its own environment variable VAR.",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create or replace a secret; the value comes from stdin or a hidden prompt."""
    api = client(ctx).secrets
    made = api.set(name, env=from_env) if from_env else api.set(name, value=_read_value())
    if json_out:
        print_json(wire(made))
        return
    where = f"read from the worker's ${made.env}" if made.kind == "env" else "stored encrypted"
    console().print(f"secret [bold]{escape(made.name)}[/] set ({escape(where)})", highlight=False)


@secrets_app.command("list")
def list_secrets(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List secrets: names, kinds and update times, never values."""
    items = client(ctx).secrets.list()
    if json_out:
        print_json(wire_list(items))
        return
    out = console()
    if not items:
        out.print("no secrets: create one with `meta-agent secrets set NAME`", style="dim")
        return
    t = table("NAME", "KIND", "WORKER VARIABLE", "UPDATED")
    t.columns[0].no_wrap = True
    for s in items:
        t.add_row(escape(s.name), s.kind, escape(s.env or "-"), age(s.updated_at))
    out.print(t)


@secrets_app.command("delete")
def delete_secret(ctx: typer.Context, name: NameArg, json_out: JsonOption = False) -> None:
    """Delete a secret (refused while an agent lists it)."""
    client(ctx).secrets.delete(name)
    if json_out:
        print_json({"name": name, "deleted": True})
        return
    console().print(f"secret {escape(name)} [red]deleted[/]", highlight=False)
