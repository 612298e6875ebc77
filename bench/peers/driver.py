"""The peers' client side, run inside a peer's own venv (stdlib only here).

A task's code sends one UDP datagram, `<tag> <time.monotonic()>`, to the client: CLOCK_MONOTONIC
is system-wide on Linux, so the stamps of the client and of a worker process compare directly.
The driver talks to the bench on stdout (one JSON object a line) and waits on stdin for "go"
before the throughput phase, so the bench can read every process's CPU time around it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

_sock: socket.socket | None = None


def stamp(tag: str) -> None:
    """Called first thing by a peer's no-op task, in the worker process."""
    global _sock
    if _sock is None:  # per process: a prefork child makes its own after the fork
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{tag} {time.monotonic()!r}".encode(), ("127.0.0.1", int(os.environ["BENCH_PEERS_UDP"])))


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


class Probe:
    """Receives the tasks' datagrams on a thread; `wait(tag)` returns a task's stamp."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got: queue.Queue[tuple[str, float]] = queue.Queue()
        threading.Thread(target=self._recv, daemon=True).start()

    def _recv(self) -> None:
        while True:
            try:
                data = self.sock.recv(256)
            except OSError:  # closed
                return
            tag, t = data.decode().split()
            self.got.put((tag, float(t)))

    def close(self) -> None:
        self.sock.close()

    def wait(self, tag: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            got, t = self.got.get(timeout=max(0.001, deadline - time.monotonic()))
            if got == tag:
                return t


def dispatch(enqueue: Callable[[str], object], probe: Probe, samples: int, warmup: int) -> list[float]:
    lat: list[float] = []
    for i in range(warmup + samples):
        time.sleep(0.005)  # as bench.bench: the previous task's worker goes idle again
        tag = f"d{i}"
        t0 = time.monotonic()
        enqueue(tag)
        t1 = probe.wait(tag, 60)
        if i >= warmup:
            lat.append((t1 - t0) * 1000)
        if (i + 1) % 100 == 0:
            say(f"dispatch {i + 1}/{warmup + samples}")
    return lat


def throughput(enqueue: Callable[[str], object], probe: Probe, n: int, clients: int) -> dict[str, float]:
    """`n` tasks, one enqueue call each, from `clients` threads; to the last task's stamp."""
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for i in range(k, n, clients):
                enqueue(f"t{i}")
        except BaseException as e:  # reported below: a silent client would hang the wait
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    seen: set[str] = set()
    last = t0
    enqueued = None
    deadline = t0 + max(120.0, n / 5)
    while len(seen) < n:
        if errors:
            raise SystemExit(f"enqueue failed: {errors[0]!r}")
        if enqueued is None and not any(t.is_alive() for t in threads):
            enqueued = time.monotonic()
        try:
            tag, t = probe.got.get(timeout=max(0.001, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(seen)} of {n} tasks ran before the deadline") from None
            continue
        if tag.startswith("t") and tag not in seen:
            seen.add(tag)
            last = max(last, t)
            if len(seen) % 1000 == 0:
                say(f"throughput {len(seen)}/{n}")
    for t in threads:
        t.join()
    enqueued = enqueued or time.monotonic()
    return {"tasks": n, "seconds": round(last - t0, 3), "enqueue_per_s": round(n / (enqueued - t0), 1)}


def main(enqueue: Callable[[str], object]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--tasks", type=int, required=True)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    probe = Probe()
    emit(event="listening", port=probe.port)
    enqueue("ready")
    probe.wait("ready", 120)  # the workers are up and consuming
    emit(event="dispatch", latencies_ms=dispatch(enqueue, probe, args.samples, args.warmup))
    emit(event="throughput-ready")
    if sys.stdin.readline().strip() != "go":
        return
    emit(event="throughput", **throughput(enqueue, probe, args.tasks, args.clients))
