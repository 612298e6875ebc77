"""bench/peers' accounting on synthetic inputs: /proc parsing, CPU per process group, ratios, table."""

from __future__ import annotations

from pathlib import Path

from bench import bench
from bench.peers import driver, procstat, report


def _stat(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # proc(5) fields 1-17, then a tail the parser must ignore
    return (
        f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304 1 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0"
    )


def _proc(tmp: Path, *lines: str) -> Path:
    for line in lines:
        d = tmp / line.split()[0]
        d.mkdir()
        (d / "stat").write_text(line + "\n")
    (tmp / "self").mkdir()  # not a pid: skipped
    return tmp


def test_parse_stat_survives_a_comm_with_spaces_and_parentheses() -> None:
    s = procstat.parse_stat(_stat(42, "celery: a (b) c)", 7, 100, 20, 3, 4))
    assert (s.pid, s.comm, s.ppid, s.ticks, s.child_ticks) == (42, "celery: a (b) c)", 7, 120, 7)


def test_groups_count_their_trees_and_reaped_children_but_stop_at_other_groups(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path,
        _stat(10, "python", 1, 5, 5),  # the bench (client), parent of the server and the worker
        _stat(11, "python", 10, 100, 50),  # server
        _stat(12, "celery", 10, 10, 0, 30, 0),  # worker main; reaped pool children: 30
        _stat(13, "celery", 12, 40, 2),  # a pool child
        _stat(20, "postgres", 1, 1, 1, 9, 0),  # postmaster
        _stat(21, "postgres", 20, 60, 0),  # a backend
    )
    stats = procstat.read_all(proc)
    assert procstat.roots_by_comm(stats, "postgres") == [20]
    ticks = procstat.snapshot({"client": [10], "server": [11], "workers": [12], "broker": [20]}, proc)
    assert ticks == {"client": 10, "server": 150, "workers": 10 + 30 + 42, "broker": 2 + 9 + 60}


def test_per_task_ms_is_the_difference_in_milliseconds_over_the_tasks() -> None:
    before, after = {"workers": 100, "client": 7}, {"workers": 100 + 5 * procstat.TICKS, "client": 7}
    assert procstat.per_task_ms(before, after, 1000) == {"workers": 5.0, "client": 0.0}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert (bench.pct(values, 50), bench.pct(values, 99), bench.pct(values, 100)) == (51.0, 99.0, 100.0)
    assert bench.pct([3.0], 99) == 3.0


def _row(rnd: int, system: str, tps: float, cpu: dict[str, float]) -> dict[str, object]:
    return {
        "round": rnd,
        "system": system,
        "dispatch": {"p50_ms": 3.14, "p99_ms": 9.87},
        "throughput": {"tasks_per_s": tps},
        "cpu_ms_per_task": cpu,
    }


def test_ratios_compare_within_a_round_only() -> None:
    rows = [
        _row(1, "celery", 400, {}),
        _row(1, "procrastinate", 200, {}),
        _row(1, "sqlite", 100, {}),
        _row(2, "celery", 500, {}),
        _row(2, "sqlite", 250, {}),
    ]
    got = [(r["system"], r["vs_celery"], r["vs_procrastinate"]) for r in report.with_ratios(rows)]
    assert got == [
        ("celery", 1.0, 2.0),
        ("procrastinate", 0.5, 1.0),
        ("sqlite", 0.25, 0.5),
        ("celery", 1.0, None),
        ("sqlite", 0.5, None),
    ]


def test_table_has_one_line_per_system_and_round_with_dashes_for_missing_processes() -> None:
    rows = [
        {
            **_row(1, "celery", 400, {"workers": 2.0, "client": 1.25, "broker": 0.25}),
            "config": {"pool": "threads"},
        },
        _row(1, "sqlite", 100, {"server": 6.0, "workers": 3.0, "client": 1.0}),
    ]
    lines = report.table(rows).splitlines()
    assert len(lines) == 4
    assert (
        lines[2]
        == "| 1 | Celery + Redis (threads pool) | 3.1 / 9.9 | 400 | 1.00 | — | — | 2.00 | 1.25 | 0.25 | 3.50 |"
    )
    assert (
        lines[3] == "| 1 | meta-agent, SQLite | 3.1 / 9.9 | 100 | 0.25 | — | 6.00 | 3.00 | 1.00 | — | 10.00 |"
    )


def test_the_driver_times_tasks_by_their_udp_stamps(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    probe = driver.Probe()
    monkeypatch.setenv("BENCH_PEERS_UDP", str(probe.port))
    try:
        # The "task" runs inside the enqueue call: its stamp comes after the client's.
        lat = driver.dispatch(driver.stamp, probe, samples=5, warmup=2)
        assert len(lat) == 5 and all(0 <= v < 1000 for v in lat)
        r = driver.throughput(driver.stamp, probe, 200, 8)
        assert r["tasks"] == 200 and 0 < r["seconds"] < 60
    finally:
        probe.close()
        if driver._sock is not None:  # the "worker's" sending socket, kept per process
            driver._sock.close()
            driver._sock = None
