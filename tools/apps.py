"""MCP Apps (extension `io.modelcontextprotocol/ui`, spec version 2026-01-26): the board in the chat.

Hosts that render MCP Apps show `stream_task`'s result as a live task card and `list_tasks`'s
as a mini Kanban board: both tools carry `_meta.ui.resourceUri`, pointing at a `ui://` HTML
resource (`text/html;profile=mcp-app`) the host loads into a sandboxed iframe. The views
reach nothing themselves (their CSP domains are declared empty): every read and every action
(answer, cancel, retry) is a `tools/call` the host makes on the view's behalf, so the API's
scope checks apply to it exactly as to the model's own calls.

Clients that do not declare the extension (with the `text/html;profile=mcp-app` MIME type)
see exactly what they saw before: `hide_from_plain_clients` takes `_meta.ui` off the tools
and the `ui://` resources out of `resources/list` for them. The HTML lives in `tools/ui/`;
docs/mcp-apps.md describes the views and the protocol.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, cast

from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

__all__ = [
    "APP_MIME_TYPE",
    "BOARD_URI",
    "CARD_URI",
    "EXTENSION_ID",
    "SPEC_VERSION",
    "TaskApps",
    "hide_from_plain_clients",
    "ui_meta",
    "view_html",
]

SPEC_VERSION = "2026-01-26"  # the MCP Apps version the views speak in `ui/initialize`
CARD_URI = "ui://meta-agent/task-card.html"
BOARD_URI = "ui://meta-agent/board.html"
# Spliced into each view, so that a view is one self-contained document.
_PARTS = {"/*{{style.css}}*/": "style.css", "//{{bridge.js}}": "bridge.js"}


def ui_meta(resource_uri: str) -> dict[str, Any]:
    """The `_meta` of a tool whose results a view renders (model and app may both call it)."""
    return {"ui": {"resourceUri": resource_uri}}


@cache
def view_html(name: str) -> str:
    """The view `tools/ui/<name>.html` with the shared style and bridge script inlined."""
    folder = files("tools") / "ui"
    html = (folder / f"{name}.html").read_text(encoding="utf-8")
    for marker, part in _PARTS.items():
        html = html.replace(marker, (folder / part).read_text(encoding="utf-8"))
    return html


class TaskApps(Apps):
    """The two views, registered as `ui://` resources through the SDK's Apps extension (which
    also advertises `io.modelcontextprotocol/ui` in the server's capabilities)."""

    def __init__(self) -> None:
        super().__init__()
        # Declared, and empty: the views fetch nothing, load nothing and embed nothing.
        nothing = ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[])
        self.add_html_resource(
            CARD_URI,
            view_html("task-card"),
            name="task_card",
            title="Task card",
            description="A live card for one task: status, phase, its reply and log, the pending "
            "question with an answer box, Cancel and Retry.",
            csp=nothing,
            prefers_border=True,
        )
        self.add_html_resource(
            BOARD_URI,
            view_html("board"),
            name="task_board",
            title="Task board",
            description="A mini Kanban board of recent tasks with counts per column.",
            csp=nothing,
            prefers_border=True,
        )


def _plain_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plain: list[dict[str, Any]] = []
    for tool in tools:
        tool = dict(tool)
        meta = {k: v for k, v in tool.pop("_meta", {}).items() if k != "ui"}
        plain.append({**tool, "_meta": meta} if meta else tool)
    return plain


def _plain_resources(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if not str(r.get("uri", "")).startswith("ui://")]


async def hide_from_plain_clients(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: a client that did not declare MCP Apps gets today's lists.

    The spec lets a server offer UI variants only to hosts that declared support; a plain
    client must not be told about views it cannot show (an assistant would read
    `_meta.ui` as noise, or try to read `ui://` resources as data).
    """
    result = await call_next(ctx)
    # Below the middleware the runner has already shaped the result for the wire: a dict.
    if ctx.method not in ("tools/list", "resources/list") or not isinstance(result, dict):
        return result
    if client_supports_apps(ctx):
        return result
    if ctx.method == "tools/list" and isinstance(result.get("tools"), list):
        return {**result, "tools": _plain_tools(cast(list[dict[str, Any]], result["tools"]))}
    if ctx.method == "resources/list" and isinstance(result.get("resources"), list):
        return {**result, "resources": _plain_resources(cast(list[dict[str, Any]], result["resources"]))}
    return result
