"""Two control-plane replicas on one PostgreSQL database, each running its schedule ticker,
start exactly one task per due time."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.board_api.test_api import seed
from tests.schedules.helpers import make_due, schedule_body
from tests.support import free_port, spawn, wait_for

pytestmark = [
    pytest.mark.xdist_group("processes"),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

SCHEDULES = 12
ROUNDS = 3


@pytest.fixture
def replicas(db_url: str, tmp_path: Path) -> Iterator[list[str]]:
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    for i in range(2):
        port = free_port()
        proc = spawn(
            ["-m", "cli.serve"],
            log=tmp_path / f"replica{i}.log",
            META_AGENT_DATABASE_URL=db_url,
            META_AGENT_PORT=str(port),
            META_AGENT_EMBEDDED_WORKER="false",
        )
        started.append((f"http://127.0.0.1:{port}", proc))
    for url, _ in started:
        wait_for(
            lambda url=url: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, f"replica {url}"
        )
    yield [url for url, _ in started]
    for _, p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def scheduled(c: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    return c.get("/tasks", params={"source": "schedule", "limit": 200}).json()["items"]  # type: ignore[no-any-return]


def test_two_replicas_fire_each_due_time_exactly_once(replicas: list[str], db_url: str) -> None:
    a, b = replicas
    with (
        httpx.Client(base_url=a + "/api/v1", timeout=30) as ca,
        httpx.Client(base_url=b + "/api/v1", timeout=30) as cb,
    ):
        seed(ca)
        for i in range(SCHEDULES):
            # queue: every run starts; so each due time shows as exactly one task.
            client = ca if i % 2 else cb
            assert (
                client.post("/schedules", json=schedule_body(f"s{i:02}", overlap="queue")).status_code == 201
            )
        for round_ in range(1, ROUNDS + 1):
            make_due(db_url)  # every schedule due at once, on both replicas' tickers
            want = SCHEDULES * round_
            wait_for(lambda want=want: len(scheduled(cb)) >= want, 20, f"{want} scheduled tasks")
            # A second firing of a due time would be a concurrent one (the first moves
            # next_run_at to tomorrow 08:00), so it would be committed by now.
            items = ca.get("/schedules").json()["items"]
            assert {s["name"]: s["runs"] for s in items} == {f"s{i:02}": round_ for i in range(SCHEDULES)}
            assert all(s["next_run_at"] > s["last_run_at"] for s in items)
        tasks = scheduled(ca)
        assert len(tasks) == SCHEDULES * ROUNDS
        per_schedule: dict[str, int] = {}
        for t in tasks:
            per_schedule[t["schedule_id"]] = per_schedule.get(t["schedule_id"], 0) + 1
        assert sorted(per_schedule.values()) == [ROUNDS] * SCHEDULES
