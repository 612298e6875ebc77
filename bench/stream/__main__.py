"""`make bench-stream`: streaming load on one control plane (SQLite) and on two replicas (PostgreSQL).

--tasks tasks are claimed through the API and each streams --rate `message_delta` events a
second on a fixed schedule from --senders load-generator processes (the worker's EventBatcher,
~50 ms batches, the SDK's worker API). A follower process holds --followers SSE streams, one
per task (tasks 0..followers-1), and measures each event's lag from the moment the agent
produced it. After --warmup s, --seconds s are measured; then every task completes, and the
store is checked: every event stored once, every follower saw all of its task's, in order.
On PostgreSQL, task i's events go to replica i % 2 and its follower reads replica (i + 1) % 2.

Prints one markdown table; the JSON goes to bench/results/stream-<UTC>.json (or --out).
Exit status 1 when the integrity check failed. PostgreSQL: the server named by
$META_AGENT_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), where
a database of this process's own (`meta_agent_bench_PID`) is created; the next bench drops
it once this process is gone. Through make:
`make bench-stream STREAM_ARGS="--stores sqlite --seconds 10"`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.bench import ROOT
from bench.stream.report import figures, table
from bench.stream.run import Options, run, say


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--tasks", type=int, default=200, help="streaming tasks (default 200)")
    ap.add_argument(
        "--rate", type=float, default=50.0, help="message_delta events per second per task (default 50)"
    )
    ap.add_argument("--followers", type=int, default=100, help="SSE followers, one per task (default 100)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default 3)")
    ap.add_argument("--senders", type=int, default=4, help="load-generator processes (default 4)")
    ap.add_argument(
        "--sender-nice",
        type=int,
        default=10,
        help="the senders' nice value (default 10): on a small shared machine the load generator "
        "then yields the CPU to the server it measures, as workers on other machines would; 0 to compete",
    )
    ap.add_argument(
        "--stores",
        default="sqlite,postgresql",
        help="comma-separated: sqlite (1 server), postgresql (2 replicas)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy each server over the window (collapsed stacks in DIR)",
    )
    ap.add_argument("--out", type=Path, help="the JSON file (default bench/results/stream-<UTC>.json)")
    ap.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    args = ap.parse_args(argv)
    stores = args.stores.split(",")
    if not set(stores) <= {"sqlite", "postgresql"}:
        ap.error(f"--stores: sqlite and/or postgresql, not {args.stores!r}")
    if args.followers > args.tasks or min(args.tasks, args.senders) < 1 or args.followers < 0:
        ap.error("need --tasks >= 1, --senders >= 1 and 0 <= --followers <= --tasks")
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0:
        ap.error("need --rate > 0, --seconds > 0 and --warmup >= 0")
    if args.senders > args.tasks:
        ap.error("--senders must not exceed --tasks")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    o = Options(
        args.tasks,
        args.rate,
        args.followers,
        args.seconds,
        args.warmup,
        args.senders,
        args.sender_nice,
        args.profile,
    )
    raw = [run(store, o) for store in args.stores.split(",")]
    rows = [figures(r, o) for r in raw]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or ROOT / "bench" / "results" / f"stream-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"at": stamp, "args": {k: str(v) for k, v in vars(args).items()}, "figures": rows, "raw": raw}
    out.write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows))
    say(f"JSON: {out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
