"""`make bench-peers`: meta-agent beside Celery + Redis and procrastinate + PostgreSQL, one run.

The same protocol for every system, in rounds that alternate the systems:
- dispatch: a client stamps the time and enqueues one task, idle workers waiting; to the moment
  the task's code starts (meta-agent: to the claim answer, as `make bench`). Sequential, after
  20 warm-up samples; p50 / p99.
- throughput: `--tasks` no-op tasks, one enqueue call each, from `--clients` concurrent clients,
  4 worker slots; wall time from the first enqueue to the last task's completion.
- CPU ms per task of each process group (server, workers, client, broker/database) over the
  throughput phase, from /proc/PID/stat.
The peers run in their own virtualenvs under bench/peers/.venvs (pinned, git-ignored, never
project dependencies). Results: a markdown table on stdout, JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import bench
from bench.peers import meta, peers, report, venvs

SYSTEMS = ("celery", "procrastinate", "sqlite", "postgresql")


def say(msg: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="in this order within each round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=200, help="dispatch samples per system and round")
    ap.add_argument("--tasks", type=int, default=5000, help="throughput tasks per system and round")
    ap.add_argument("--clients", type=int, default=8, help="concurrent enqueuers")
    ap.add_argument("--slots", type=int, default=4, help="worker slots in total, per system")
    ap.add_argument("--celery-pool", choices=["prefork", "threads"], default="threads")
    ap.add_argument(
        "--meta-workers", type=int, default=1, help="meta-agent worker processes sharing the slots"
    )
    args = ap.parse_args(argv)
    args.systems = args.systems.split(",")
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or args.slots % args.meta_workers:
        ap.error(f"unknown systems {sorted(unknown)}" if unknown else "--slots must divide by --meta-workers")
    return args


def run_one(system: str, args: argparse.Namespace) -> dict[str, Any]:
    if system in ("celery", "procrastinate"):
        return peers.run(system, args.samples, args.tasks, args.clients, args.slots, args.celery_pool)
    return meta.run(
        system, args.samples, args.tasks, args.clients, args.meta_workers, args.slots // args.meta_workers
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started, load = datetime.now(UTC), os.getloadavg()
    if load[0] > (os.cpu_count() or 1):
        say(
            f"the machine is busy (load average {load[0]:.1f}): these figures will not compare with a quiet run"
        )
    for peer in ("celery", "procrastinate"):
        if peer in args.systems:
            venvs.ensure_venv(peer, say)
    if "celery" in args.systems:
        venvs.ensure_service("redis", say)
    if {"procrastinate", "postgresql"} & set(args.systems):
        venvs.ensure_service("postgresql", say)
    rows: list[dict[str, Any]] = []
    for rnd in range(1, args.rounds + 1):
        for system in args.systems:
            say(
                f"round {rnd}/{args.rounds}: {report.LABELS[system]}: {args.samples} dispatch samples, {args.tasks} tasks ..."
            )
            t0 = time.monotonic()
            row = {"round": rnd, "system": system, **run_one(system, args)}
            rows.append(row)
            d, t = row["dispatch"], row["throughput"]
            say(
                f"round {rnd}: {system}: dispatch p50 {d['p50_ms']} / p99 {d['p99_ms']} ms, "
                f"{t['tasks_per_s']} tasks/s, CPU ms/task {row['cpu_ms_per_task']} ({time.monotonic() - t0:.0f} s)"
            )
    table = report.table(rows)
    print(table)
    out = bench.ROOT / "bench" / "results" / f"peers-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    doc = {
        "started": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": load,
            "loadavg_at_end": os.getloadavg(),
        },
        "args": vars(args),
        "pins": venvs.REQUIREMENTS,
        "rows": report.with_ratios(rows),
        "table": table,
    }
    out.write_text(json.dumps(doc, indent=2))
    say(f"results: {out}")


if __name__ == "__main__":
    main()
