"""`keys create|list|revoke`: API keys for people, scripts and workers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cli.common import JsonOption, client, escape, wire, wire_list
from cli.output import age, console, err_console, print_json, table

__all__ = ["keys_app"]

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (admin).")


class Scope(StrEnum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    worker = "worker"


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", "-s", help="A scope to grant (repeatable).")
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Bind a worker key to this queue (repeatable; default: any)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a key; the secret is printed once and never again."""
    if not scope:
        raise typer.BadParameter(
            "give at least one --scope (admin, operator, viewer, worker)", param_hint="'--scope'"
        )
    created = client(ctx).keys.create(name, [s.value for s in dict.fromkeys(scope)], queue)
    if json_out:
        print_json(wire(created))
        return
    console().print(created.key or "", markup=False, highlight=False, soft_wrap=True)
    about = f"{created.id} ({created.name}: {', '.join(created.scopes)})"
    err_console().print(
        f"[yellow]key {escape(about)} is shown only now: store it; it cannot be shown again[/]"
    )


@keys_app.command("list")
def list_keys(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List keys (their prefixes, never the secrets)."""
    items = client(ctx).keys.list()
    if json_out:
        print_json(wire_list(items))
        return
    out = console()
    if not items:
        out.print("no keys: the server is open on loopback until one is created", style="dim")
        return
    t = table("ID", "NAME", "PREFIX", "SCOPES", "QUEUES", "CREATED", "LAST USED")
    t.columns[0].no_wrap = True
    for key in items:
        t.add_row(
            escape(key.id),
            escape(key.name or "-"),
            escape(key.prefix or "-"),
            escape(", ".join(key.scopes)),
            escape(", ".join(key.queues) or "-"),
            age(key.created_at),
            "-",  # the API does not report a key's last use (yet)
        )
    out.print(t)


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    json_out: JsonOption = False,
) -> None:
    """Revoke a key; requests with it fail from now on."""
    client(ctx).keys.revoke(key_id)
    if json_out:
        print_json({"id": key_id, "revoked": True})
        return
    console().print(f"key {escape(key_id)} [red]revoked[/]", highlight=False)
