"""`hooks create|list|get|delete|rotate-secret|deliveries`: webhooks in (admin).

A hook turns a signed JSON delivery to `POST /hooks/NAME` into an execution, its prompt and
parameters rendered from the payload by Jinja templates (docs/webhooks.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import JsonOption, client, escape, parse_params, wire, wire_list
from cli.output import age, console, err_console, print_json, table

if TYPE_CHECKING:
    from sdk.hooks import HookOut

__all__ = ["hooks_app"]

hooks_app = typer.Typer(
    no_args_is_help=True, help="Webhooks in: signed deliveries become executions (admin)."
)


class Scheme(StrEnum):
    github = "github"
    generic = "generic"


def _show(hook: HookOut) -> None:
    out = console()
    t = table("FIELD", "VALUE")
    for name, value in (
        ("name", hook.name),
        ("path", hook.url_path),
        ("agent", hook.agent),
        ("queue", hook.queue or "-"),
        ("scheme", hook.scheme),
        ("prompt", hook.prompt_template),
        *((f"param {k}", v) for k, v in hook.params.items()),
        ("callback", hook.callback_url or "-"),
        ("created", age(hook.created_at)),
    ):
        t.add_row(escape(name), escape(value))
    out.print(t)


def _print_secret(hook: HookOut, json_out: bool) -> None:
    if json_out:
        print_json(wire(hook))
        return
    console().print(hook.secret or "", markup=False, highlight=False, soft_wrap=True)
    err_console().print(
        f"[yellow]the secret of hook {escape(hook.name)} (POST {escape(hook.url_path)}, {hook.scheme} "
        "signatures) is shown only now: give it to the sender; it cannot be shown again[/]"
    )


@hooks_app.command("create")
def create_hook(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The hook's name (a slug): senders post to /hooks/NAME.")],
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent its executions run.")],
    prompt_template: Annotated[
        str,
        typer.Option(
            "--prompt-template",
            "-p",
            help='Jinja template of the prompt, e.g. "Investigate {{ alert.name }} on {{ alert.host }}".',
        ),
    ],
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Worker queue (default: the agent's).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help='A parameter template, KEY="{{ ... }}" (repeatable).'),
    ] = None,
    scheme: Annotated[
        Scheme, typer.Option(help="Signature scheme: github (X-Hub-Signature-256) or generic (X-Signature).")
    ] = Scheme.github,
    callback_url: Annotated[
        str | None, typer.Option(help="Gets the execution's outcome (POST, JSON) when it ends.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a hook; its secret is printed once and never again."""
    body: dict[str, object] = {
        "name": name,
        "agent": agent,
        "prompt_template": prompt_template,
        "params": parse_params(param),
        "scheme": scheme.value,
    }
    if queue:
        body["queue"] = queue
    if callback_url:
        body["callback_url"] = callback_url
    _print_secret(client(ctx).hooks.create(body), json_out)


@hooks_app.command("list")
def list_hooks(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List hooks (never their secrets)."""
    items = client(ctx).hooks.list()
    if json_out:
        print_json(wire_list(items))
        return
    out = console()
    if not items:
        out.print(
            'no hooks yet: `meta-agent hooks create NAME --agent A --prompt-template "..."`', style="dim"
        )
        return
    t = table("NAME", "AGENT", "QUEUE", "SCHEME", "CALLBACK", "CREATED")
    t.columns[0].no_wrap = True
    for hook in items:
        t.add_row(
            escape(hook.name),
            escape(hook.agent),
            escape(hook.queue or "-"),
            hook.scheme,
            escape(hook.callback_url or "-"),
            age(hook.created_at),
        )
    out.print(t)


@hooks_app.command("get")
def get_hook(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Show a hook (without its secret)."""
    hook = client(ctx).hooks.get(name)
    if json_out:
        print_json(wire(hook))
        return
    _show(hook)


@hooks_app.command("delete")
def delete_hook(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Delete a hook; deliveries to it get 404 from now on (its executions stay)."""
    client(ctx).hooks.delete(name)
    if json_out:
        print_json({"deleted": name})
        return
    console().print(f"hook [bold]{escape(name)}[/] [green]deleted[/]", highlight=False)


@hooks_app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name or id.")],
    json_out: JsonOption = False,
) -> None:
    """Give a hook a new secret (printed once); the old one stops working at once."""
    _print_secret(client(ctx).hooks.rotate_secret(name), json_out)


@hooks_app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Hook name or id.")],
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
    json_out: JsonOption = False,
) -> None:
    """A hook's latest deliveries: the execution each made and how its callback went."""
    items = client(ctx).hooks.deliveries(name, limit)
    if json_out:
        print_json(wire_list(items))
        return
    t = table("DELIVERY", "EXECUTION", "CALLBACK", "ATTEMPTS", "ERROR", "RECEIVED")
    for d in items:
        t.add_row(
            escape(d.delivery_id),
            escape(d.task_id),
            d.callback_status,
            str(d.callback_attempts),
            escape(d.callback_error or "-"),
            age(d.created_at),
        )
    console().print(t)
