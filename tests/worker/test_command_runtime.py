"""The `command` runtime, run for real against subprocesses (no control plane involved)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.worker.helpers import NS_PID, alive, gone, make_ctx, outside_pid, wait_gone
from worker.runtime import InputRequested, TaskFailed
from worker.runtimes.command import CommandRuntime, render_argv

HOSTILE = "x; rm -rf / $(id) `id` \"dq\" 'sq' {prompt} \\ $HOME\n*"
PRINT_ARGV = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


async def test_parameter_values_arrive_verbatim_as_single_argv_elements(tmp_path):
    ctx, _ = make_ctx(tmp_path / "ws", [*PRINT_ARGV, "{host}", "{prompt}"], parameters={"host": HOSTILE})
    outcome = await CommandRuntime().run(ctx)
    assert outcome.result["exit_code"] == 0
    assert json.loads(outcome.result["output"]) == [HOSTILE, "do it"]


async def test_parameters_reach_a_shell_only_as_environment_variables(tmp_path):
    script = 'printf "%s|" "$PARAM_HOST" "$TASK_PROMPT"'
    ctx, _ = make_ctx(tmp_path / "ws", ["bash", "-c", script], parameters={"host": HOSTILE}, prompt="p $(id)")
    outcome = await CommandRuntime().run(ctx)
    assert outcome.result["output"] == f"{HOSTILE}|p $(id)|\n"


def test_only_whole_elements_are_placeholders():
    values = {"n": 7, "host": "h"}
    assert render_argv(["{n:03d}", "{host}", "{{host}}", "{nope}"], values) == [
        "007",
        "h",
        "{{host}}",
        "{nope}",
    ]
    for verbatim in ("{host.__class__}", "{host[0]}", "{}", "{print $1}", "${HOME}", "{ x", "{{.Names}}"):
        assert render_argv(["prog", verbatim], values) == ["prog", verbatim]
    with pytest.raises(TaskFailed) as err:
        render_argv(["{n:zz}"], values)
    assert err.value.code == "invalid_command"


# Every way of handing text to an interpreter: the value must never be part of that text.
EMBEDDING = [
    ["bash", "-c", "ping -c1 {host}"],
    ["bash", "-o", "pipefail", "-c", "ping -c1 {host} | head"],
    ["/usr/bin/env", "bash", "-c", "ping -c1 {host}"],
    ["env", "-i", "sh", "-c", "ping {host}"],
    ["sudo", "bash", "-c", "ping {host}"],
    ["sudo", "-u", "ops", "sh", "-ec", "ping {host}"],
    ["/bin/sh", "-ec", "ping {host}"],
    ["zsh", "-lc", "ping {host}"],
    ["python3", "-c", "import os; os.system('ping {host}')"],
    ["perl", "-e", "system('ping {host}')"],
    ["ssh", "box", "ping {host}"],
    ["xargs", "-I{}", "sh", "-c", "echo {} {host}"],
    ["curl", "--url=https://{host}/x"],
    ["prog", "{prompt} and more"],
    ["prog", "{host:>10}!"],
]


@pytest.mark.parametrize("template", EMBEDDING, ids=lambda t: " ".join(t)[:40])
def test_a_value_inside_a_larger_element_is_refused_whatever_the_program(template):
    with pytest.raises(TaskFailed) as err:
        render_argv(template, {"host": "h; reboot", "prompt": "p"})
    assert err.value.code == "unsafe_command"
    assert "$PARAM_HOST" in err.value.message or "$TASK_PROMPT" in err.value.message


async def test_a_hostile_value_reaches_every_shell_form_only_as_data(tmp_path, shared_tmp):
    marker = shared_tmp / "pwned"  # where the sandboxed command could write, were it injected
    value = f"x; touch {marker}; $(touch {marker}) `touch {marker}`"
    forms = [
        ["bash", "-o", "pipefail", "-c", 'printf "%s" "$PARAM_HOST"'],
        ["/usr/bin/env", "bash", "-c", 'printf "%s" "$PARAM_HOST"'],
        ["sh", "-ec", 'printf "%s" "$PARAM_HOST"'],
        ["python3", "-c", "import os, sys; sys.stdout.write(os.environ['PARAM_HOST'])"],
        ["printf", "%s", "{host}"],
    ]
    for form in forms:
        ctx, _ = make_ctx(tmp_path / "ws", form, parameters={"host": value})
        assert (await CommandRuntime().run(ctx)).result["output"] == value + "\n"
    assert not marker.exists()


@pytest.mark.parametrize("shell", ["bash", "/bin/sh", "zsh"])
def test_a_script_without_placeholders_is_passed_as_written(shell):
    script = "awk '{print $1}' ${HOME}/f {{x}} {unknown}"
    assert render_argv([shell, "-c", script, "{host}"], {"host": "h"}) == [shell, "-c", script, "h"]
    assert render_argv([shell, "script.sh", "{host}"], {"host": "h"}) == [shell, "script.sh", "h"]


async def test_missing_required_parameter_asks_for_it(tmp_path):
    spec = {"host": {"description": "the host to check", "required": True}, "port": {"default": 22}}
    ctx, _ = make_ctx(tmp_path / "ws", [*PRINT_ARGV, "{host}"], spec=spec)
    with pytest.raises(InputRequested) as asked:
        await CommandRuntime().run(ctx)
    assert asked.value.key == "host"
    assert asked.value.question == "Value for parameter host? (the host to check)"
    assert not (tmp_path / "ws").exists()  # nothing ran


async def test_answer_in_inputs_fills_the_parameter_and_overrides(tmp_path):
    spec = {"host": {"description": "the host", "required": True}, "port": {"default": 22}}
    ctx, _ = make_ctx(
        tmp_path / "ws",
        [*PRINT_ARGV, "{host}", "{port}"],
        spec=spec,
        parameters={"host": ""},
        inputs={"host": "db1"},
    )
    outcome = await CommandRuntime().run(ctx)
    assert json.loads(outcome.result["output"]) == ["db1", "22"]


async def test_worker_secrets_do_not_reach_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("META_AGENT_API_KEY", "s3cret-key-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-secret")
    dump = [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"]
    ctx, _ = make_ctx(tmp_path / "ws", dump, parameters={"host": "h1", "dry-run": True})
    env = json.loads((await CommandRuntime().run(ctx)).result["output"])
    assert "s3cret-key-value" not in json.dumps(env) and "another-secret" not in json.dumps(env)
    assert env["PARAM_HOST"] == "h1" and env["PARAM_DRY_RUN"] == "true"
    assert env["TASK_PROMPT"] == "do it" and env["TASK_ID"] == "task-1"
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"}
    assert {k for k in env if not k.startswith(("PARAM_", "TASK_"))} <= allowed | {
        "LC_CTYPE",
        "PWD",
        "SHLVL",
        "_",
    }


async def test_output_streams_line_by_line_with_its_stream(tmp_path):
    script = "echo one; echo warn >&2; printf 'two\\r\\nthree'"
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", script])
    outcome = await CommandRuntime().run(ctx)
    assert rec.lines("stdout") == ["one", "two", "three"]
    assert rec.lines("stderr") == ["warn"]
    assert outcome.result == {"exit_code": 0, "output": "one\ntwo\nthree\n"}


async def test_output_is_capped_with_one_truncation_notice(tmp_path):
    script = "for i in $(seq 1 500); do echo line-$i; done; python3 -c \"print('x' * 40000)\""
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", script])
    outcome = await CommandRuntime(max_output_bytes=1000).run(ctx)
    lines = rec.lines("stdout")
    assert sum("truncated" in line for line in lines) == 1
    assert sum(len(line) + 1 for line in lines[:-1]) <= 1000
    assert outcome.result["output"].endswith("x" * 100 + "\n")  # the result keeps the real end


async def test_an_endless_line_streams_in_pieces(tmp_path):
    ctx, rec = make_ctx(tmp_path / "ws", [sys.executable, "-c", "import sys; sys.stdout.write('y' * 40000)"])
    await CommandRuntime().run(ctx)
    assert [len(line) for line in rec.lines()] == [16000, 16000, 8000]


async def test_non_zero_exit_fails_with_the_last_stderr_line(tmp_path):
    ctx, _ = make_ctx(tmp_path / "ws", ["bash", "-c", "echo first >&2; echo 'disk full' >&2; exit 3"])
    with pytest.raises(TaskFailed) as err:
        await CommandRuntime().run(ctx)
    assert (err.value.code, err.value.message) == ("command_failed", "exit code 3: disk full")


async def test_unknown_program_fails_cleanly(tmp_path):
    ctx, _ = make_ctx(tmp_path / "ws", ["no-such-program-here", "{prompt}"])
    with pytest.raises(TaskFailed) as err:
        await CommandRuntime().run(ctx)
    assert err.value.code == "command_not_found"


async def test_files_under_artifacts_are_uploaded_but_not_symlinks(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("worker secret")
    script = (
        "mkdir -p artifacts/sub && echo hello > artifacts/report.txt && echo '{}' > artifacts/sub/data.json"
        f" && ln -s {secret} artifacts/leak.txt && ln -s {tmp_path} artifacts/dirlink && test -d artifacts"
    )
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", script])
    await CommandRuntime().run(ctx)
    assert rec.artifacts == {
        "report.txt": (b"hello\n", "text/plain"),
        "sub/data.json": (b"{}\n", "application/json"),
    }


def child_pid(line: str) -> int:
    """`child=PID NS` (printed inside the sandbox) as our pid."""
    inner, ns = line.split("=", 1)[1].split()
    return outside_pid(ns, int(inner))


async def test_timeout_kills_the_whole_process_group(tmp_path):
    script = f"sleep 1000 & echo child=$! {NS_PID}; wait"
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", script], timeout=1.0)
    run = asyncio.create_task(CommandRuntime().run(ctx))
    grandchild = child_pid(await rec.line("child="))
    pidfd = os.pidfd_open(grandchild)
    with pytest.raises(TaskFailed) as err:
        await asyncio.wait_for(run, 10)
    assert err.value.code == "timeout"
    await wait_gone(pidfd)
    assert not alive(grandchild)


async def test_cancel_stops_the_group_well_within_two_seconds(tmp_path):
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", f"sleep 1000 & echo child=$! {NS_PID}; wait"])
    run = asyncio.create_task(CommandRuntime().run(ctx))
    grandchild = child_pid(await rec.line("child="))
    pidfd = os.pidfd_open(grandchild)
    started = time.monotonic()
    ctx.cancelled.set()
    with pytest.raises(TaskFailed) as err:
        await asyncio.wait_for(run, 2)
    assert err.value.code == "cancelled"
    assert time.monotonic() - started < 1.0
    await wait_gone(pidfd)


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    script = "trap '' TERM; echo ready; while true; do sleep 0.2; done"
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", script])
    run = asyncio.create_task(CommandRuntime(kill_grace=0.3).run(ctx))
    await rec.line("ready")
    ctx.cancelled.set()
    with pytest.raises(TaskFailed) as err:
        await asyncio.wait_for(run, 2)
    assert err.value.code == "cancelled"


async def test_leftover_background_processes_do_not_hold_the_task(tmp_path):
    ctx, rec = make_ctx(tmp_path / "ws", ["bash", "-c", f"sleep 1000 & echo bg=$! {NS_PID}"])
    outcome = await asyncio.wait_for(CommandRuntime().run(ctx), 5)
    assert outcome.result["exit_code"] == 0
    inner, ns = (await rec.line("bg=")).removeprefix("bg=").split()
    wait_for(lambda: gone(ns, int(inner)), 5, "the leftover process to be killed")


def test_a_workspace_is_made_with_its_artifacts_directory_whatever_exists(tmp_path: Path) -> None:
    # Two mkdir calls where pathlib's parents=True made three attempts; a root that is
    # missing, or a workspace that exists (a retried task), is fine too.
    from worker.process import make_workspace

    for ws in (tmp_path / "a", tmp_path / "a", tmp_path / "missing" / "root" / "b"):
        make_workspace(ws)
        assert (ws / "artifacts").is_dir()
