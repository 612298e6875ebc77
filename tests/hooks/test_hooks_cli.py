"""`meta-agent hooks ...` against a live control plane (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from tests.cli.test_cli_standin import run
from tests.hooks.helpers import github_headers, payload, post_hook, seed
from tests.support import LiveServer


def test_hooks_commands_round_trip(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
    url = server.url

    created = run(
        None,
        "hooks", "create", "alerts", "--agent", "echo", "--queue", "q1",
        "--prompt-template", "Investigate alert {{ alert.name }} on {{ alert.host }}",
        "--param", "host={{ alert.host }}", "--scheme", "github", "--json",
        url=url,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    hook = json.loads(created.stdout)
    assert hook["secret"].startswith("whsec_") and hook["params"] == {"host": "{{ alert.host }}"}

    human = run(None, "hooks", "create", "other", "--agent", "echo", "-p", "x", url=url)
    assert human.exit_code == 0 and human.stdout.strip().startswith("whsec_")
    assert "shown only now" in human.stderr

    listed = json.loads(run(None, "hooks", "list", "--json", url=url).stdout)
    assert [h["name"] for h in listed] == ["alerts", "other"] and all(h["secret"] is None for h in listed)
    assert "alerts" in run(None, "hooks", "list", url=url).stdout
    got = run(None, "hooks", "get", "alerts", url=url)
    assert "/hooks/alerts" in got.stdout and "alert.host" in got.stdout

    body = payload()
    sent = post_hook(server, "alerts", body, github_headers(hook["secret"], body, "cli-1"))
    assert sent.status_code == 202
    deliveries = json.loads(run(None, "hooks", "deliveries", "alerts", "--json", url=url).stdout)
    assert [d["task_id"] for d in deliveries] == [sent.json()["task_id"]]

    rotated = json.loads(run(None, "hooks", "rotate-secret", "alerts", "--json", url=url).stdout)
    assert rotated["secret"] not in (None, hook["secret"])
    assert run(None, "hooks", "delete", "other", "--json", url=url).exit_code == 0

    missing = run(None, "hooks", "get", "other", url=url)
    assert missing.exit_code == 1 and "no hook named" in missing.stderr
    bad = run(None, "hooks", "create", "x", "--agent", "echo", "-p", "{% for %}", url=url)
    assert bad.exit_code == 1 and "prompt_template" in bad.stderr
