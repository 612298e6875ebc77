"""bench/stream: a small real run passes its integrity check, and the check does catch loss,
duplicates and a follower that saw too little or out of order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench import ROOT, env
from bench.stream.follower import Follow
from bench.stream.plan import Planned
from bench.stream.verify import judge


def _delta(tid: str, seq: int, n: int) -> tuple[str, int, str, dict[str, object]]:
    return (tid, seq, "message_delta", {"n": n})


def _rows(tid: str, sent: int) -> list[tuple[str, int, str, dict[str, object]]]:
    # seq 1 is the claim's status event, as in a real log
    return [(tid, 1, "status", {}), *(_delta(tid, 1 + n, n) for n in range(1, sent + 1))]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_smoke_run_stores_every_event_once_and_every_follower_sees_all(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    # On PostgreSQL two replicas, which hear each other: their commits notify for good, and
    # the bench must not wait for them to settle (bench.bench.setup's `settle`).
    if store == "postgresql":
        request.getfixturevalue("pg_url")  # reachable, or skipped (failed in CI) as every store test
    out = tmp_path / "stream.json"
    tasks, followers = (10, 10) if store == "sqlite" else (4, 4)
    args = ["--tasks", str(tasks), "--followers", str(followers), "--seconds", "3", "--warmup", "1"]
    args += ["--senders", "2", "--stores", store, "--out", str(out), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stream", *args],
        env=env(),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    (fig,) = json.loads(out.read_text())["figures"]
    integrity = fig["integrity"]
    assert integrity["ok"], integrity
    assert integrity["sent"] == integrity["stored"] == tasks * 4 * 50  # 4 s of 50 events/s
    assert (integrity["tasks_ok"], integrity["followers_ok"]) == (tasks, followers)
    assert fig["lag_ms"]["n"] > 0 and fig["events_per_s"] > 0
    assert set(fig["cpu_ms_per_1k_events"]) >= {"server_0", "senders", "followers"}


def test_the_check_passes_a_complete_log() -> None:
    r = judge(_rows("a", 3), {"a": "completed"}, {"a": 3}, {"a": 3}, {})
    assert r["ok"] and r["stored"] == 3


def test_the_check_catches_a_duplicate_a_loss_a_gap_and_an_unfinished_task() -> None:
    sent = {"dup": 3, "lost": 3, "gap": 3, "open": 3}
    rows = [
        *_rows("dup", 3),
        _delta("dup", 5, 3),  # a retried post stored twice
        *_rows("lost", 2),
        *(r for r in _rows("gap", 3) if r[1] != 3),
        *_rows("open", 3),
    ]
    status = {"dup": "completed", "lost": "completed", "gap": "completed", "open": "running"}
    r = judge(rows, status, sent, {}, {})
    assert not r["ok"]
    assert set(r["store_problems"]) == {"dup", "lost", "gap", "open"}
    assert "1 duplicates" in r["store_problems"]["dup"]


def test_the_check_catches_a_follower_that_missed_events() -> None:
    r = judge(_rows("a", 3), {"a": "completed"}, {"a": 3}, {"a": 2}, {})
    assert not r["ok"] and r["followers_ok"] == 0


def _frame(seq: int, n: int, m: float) -> bytes:
    data = {"seq": seq, "kind": "message_delta", "data": {"n": n, "m": m, "p": m}}
    return f"id: {seq}\nevent: message_delta\ndata: {json.dumps(data)}".encode()


def test_a_follower_notes_gaps_and_disorder_and_counts_lag_inside_the_window_only() -> None:
    f = Follow(Planned(0, "a", "tok", "http://x", "http://x", 0))
    f.window = (10.0, 20.0)
    f.frame(b"retry: 1000", 0.0)
    f.frame(_frame(1, 1, 5.0), 5.1)  # warm-up: seen, no lag counted
    f.frame(_frame(2, 2, 11.0), 11.2)
    f.frame(_frame(4, 4, 12.0), 12.5)  # seq 3 / n 3 skipped
    f.frame(b'event: end\ndata: {"status": "completed"}', 13.0)
    assert f.deltas == 3 and f.ended
    assert f.problems == ["seq 4 after 2", "n 4 after 2"]
    assert [round(x, 3) for x in f.lag] == [0.2, 0.5]
