"""What the bench's processes share: the plan file, the event schedule, the child protocol.

The orchestrator claims every task itself (with the sender's worker id) and writes the
plan: per task its index, id, lease token, the replica its events go to (`ingest`) and the
replica its follower reads (`follow`). Children print `ready`, read the common start time
T0 (`time.monotonic()`, system-wide on Linux) from stdin, and print one JSON line at the end.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Planned:
    i: int
    id: str
    token: str
    ingest: str  # base URL the sender posts this task's events to
    follow: str  # base URL its follower streams from (the other replica on PostgreSQL)
    sender: int


@dataclass
class Plan:
    rate: float  # events per second per task
    warmup: float
    seconds: float
    queue: str
    tasks: list[Planned] = field(default_factory=list[Planned])

    @property
    def per_task(self) -> int:
        """Events each task sends: the schedule is fixed, so the count is known in advance."""
        return math.ceil((self.warmup + self.seconds) * self.rate)

    def offset(self, i: int) -> float:
        """Task i's first event, staggered over one period so sends do not come in lockstep."""
        return (i / max(1, len(self.tasks))) / self.rate

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Plan:
        raw = json.loads(path.read_text())
        tasks = [Planned(**t) for t in raw.pop("tasks")]
        return cls(**raw, tasks=tasks)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """Milliseconds, from seconds."""
    s = sorted(values)
    return {
        "n": len(s),
        "p50_ms": round(pct(s, 50) * 1000, 1),
        "p95_ms": round(pct(s, 95) * 1000, 1),
        "p99_ms": round(pct(s, 99) * 1000, 1),
        "max_ms": round(s[-1] * 1000, 1) if s else float("nan"),
    }


def handshake() -> float:
    """Tell the orchestrator this process is ready; wait for the common start time."""
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the orchestrator went away")
    return float(line)


def finish(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
