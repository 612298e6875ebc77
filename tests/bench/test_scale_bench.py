"""bench/scale: a small real run of its replica and list phases ends with every figure.

`make bench` had stopped at the replica phase: its two servers hear each other, so their
commits notify for good, and the phase waited for them to settle (bench.bench.setup's
`settle`), then gave up. Nothing ran it in CI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.bench import ROOT, env


def test_a_small_run_of_the_replica_and_list_phases_gives_every_figure(
    request: pytest.FixtureRequest,
) -> None:
    request.getfixturevalue("pg_url")  # reachable, or skipped (failed in CI) as every store test
    args = ["--phases", "replicas,list", "--samples", "5", "--tasks", "60", "--list-tasks", "2000", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", *args], env=env(), cwd=ROOT, capture_output=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = json.loads(proc.stdout)
    replicas = out["replicas"]
    assert replicas["dispatch"]["samples"] == 5 and replicas["throughput"]["tasks"] == 60
    for store in ("sqlite", "postgresql"):
        assert set(out[store]["list"]) == {"list_50", "list_50_failed", "board", "metrics"}
        assert out[store]["dispatch"]["samples"] == 5
