"""The CLI's rules, checked on every command: each flag falls back to an environment variable
that `--help` shows, and each command that prints data takes `--json`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from cli.main import app

# Commands that print no data (they run something, or talk to a person or an MCP client).
NO_DATA = {"serve", "chat", "mcp", "worker start", "db upgrade"}


def commands() -> Iterator[tuple[list[str], click.Command]]:
    def walk(group: Any, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
        for name, sub in group.commands.items():
            if getattr(sub, "commands", None):
                yield from walk(sub, [*path, name])
            else:
                yield [*path, name], sub

    yield from walk(typer.main.get_command(app), [])


ALL = list(commands())


def expected_envvar(path: list[str], option: click.Option) -> str:
    if option.envvar:
        return str(option.envvar)
    return "_".join(["META_AGENT", *(p.upper().replace("-", "_") for p in path), str(option.name).upper()])


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_shows_every_flags_environment_variable(path: list[str], command: click.Command) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})

    assert result.exit_code == 0, result.output
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    missing = [o.opts[0] for o in options if expected_envvar(path, o) not in result.output]
    assert not missing, f"`{' '.join(path)} --help` shows no environment variable for {missing}"


def test_every_command_that_prints_data_takes_json() -> None:
    lacking = [
        " ".join(path)
        for path, command in ALL
        if " ".join(path) not in NO_DATA
        and not any("--json" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert len(ALL) > 15
    assert not lacking, f"no --json: {lacking}"
