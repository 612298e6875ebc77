"""`meta-agent mcp`: the MCP tools over stdio, for an assistant that starts us as a subprocess.

Where the control plane is and which key to use: `--url`/`--api-key` (or META_AGENT_URL /
META_AGENT_API_KEY), else the config file, else the loopback default. The file matters
because MCP clients start servers with a bare environment (HOME, PATH, ...) unless their
configuration passes variables:

    # ~/.config/meta-agent/config.toml   (or $XDG_CONFIG_HOME/..., or $META_AGENT_CONFIG)
    url = "https://cp.example.com"
    api_key = "ma_..."
    public_url = "https://cp.example.com"   # for board links; default: url

stdout carries JSON-RPC only: logs go to stderr. Nothing is locked or written at start (a
client may start the command twice to negotiate the protocol version).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from cli.common import state

__all__ = ["config_path", "mcp", "read_config"]


def config_path() -> Path:
    explicit = os.environ.get("META_AGENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meta-agent" / "config.toml"


def read_config(path: Path) -> dict[str, Any]:
    """The file's settings; {} when it does not exist. A broken file is an error, not ignored."""
    import tomllib

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc
    return {k: str(v) for k, v in data.items() if k in ("url", "api_key", "public_url") and v}


def mcp(ctx: typer.Context) -> None:
    """Serve the MCP tools (list_agents, create_task, stream_task, ...) over stdio.

    For Claude Desktop, Claude Code, Cursor, VS Code and other MCP clients (see the README).

    The control plane and key come from --url/--api-key (META_AGENT_URL, META_AGENT_API_KEY), else ~/.config/meta-agent/config.toml.
    """
    import logging
    import sys

    root = ctx.find_root()
    st = state(ctx)
    file = read_config(config_path())

    def pick(param: str, current: str | None) -> str | None:
        # Given on the command line or in the environment (typer vendors click: compare names).
        source = getattr(root.get_parameter_source(param), "name", None)
        explicit = source in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
        return current if explicit and current else file.get(param) or current

    url = pick("url", st.url) or st.url
    api_key = pick("api_key", st.api_key)
    public_url = pick("public_url", st.public_url)
    # Before the MCP SDK configures the root logger: everything to stderr, warnings only.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )

    from tools.backend import Backend
    from tools.server import build_server

    build_server(Backend(url, api_key, public_url, timeout=st.timeout), with_schedules=True).run("stdio")
