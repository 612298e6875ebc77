"""The SSE followers: one process, one connection per followed task, raw asyncio sockets.

A plain HTTP/1.1 client (chunked or not) keeps this process's CPU small next to the server's,
and stamps the arrival of each chunk before parsing it. Per task it checks that the log's seqs
arrive without a gap and that the sender's `n` goes 1, 2, 3 ...; the lag of an event is its
arrival minus the sender's stamp `m` (both `time.monotonic()`, system-wide on Linux), counted
only for events produced inside the measured window.

    python -m bench.stream.follower PLAN.json FOLLOWERS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stream.plan import Plan, Planned, finish, handshake, summary


class Follow:
    def __init__(self, t: Planned) -> None:
        self.t = t
        self.seq = 0  # last log seq seen (any kind)
        self.n = 0  # last sender number seen
        self.deltas = 0
        self.problems: list[str] = []
        self.ended = False
        self.lag: list[float] = []
        self.lag_post: list[float] = []
        self.window = (0.0, 0.0)

    def frame(self, raw: bytes, now: float) -> None:
        event, data = "message", b""
        for line in raw.split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if event == "end":
            self.ended = True
            return
        if not data:
            return  # retry: / keep-alive comments
        ev = json.loads(data)
        seq = ev["seq"]
        if seq != self.seq + 1 and len(self.problems) < 5:
            self.problems.append(f"seq {seq} after {self.seq}")
        self.seq = max(self.seq, seq)
        if event != "message_delta":
            return
        d = ev["data"]
        if d["n"] != self.n + 1 and len(self.problems) < 5:
            self.problems.append(f"n {d['n']} after {self.n}")
        self.n = max(self.n, d["n"])
        self.deltas += 1
        if self.window[0] <= d["m"] < self.window[1]:
            self.lag.append(now - d["m"])
            self.lag_post.append(now - d["p"])


async def connect(t: Planned) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
    u = urlsplit(t.follow)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    writer.write(
        f"GET /api/v1/tasks/{t.id}/stream HTTP/1.1\r\nHost: {u.netloc}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"task {t.id}: {head.decode(errors='replace').splitlines()[0]}")
    return reader, writer, b"transfer-encoding: chunked" in head.lower()


async def body(reader: asyncio.StreamReader, chunked: bool) -> bytes:
    """The next piece of the response body; b"" at its end."""
    if not chunked:
        return await reader.read(65536)
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    if size == 0:
        return b""
    return (await reader.readexactly(size + 2))[:-2]


async def follow(f: Follow, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]) -> None:
    reader, writer, chunked = conn
    buf = b""
    try:
        while not f.ended:
            piece = await body(reader, chunked)
            if not piece:
                f.problems.append("stream closed before `end`")
                return
            now = time.monotonic()
            buf += piece
            *frames, buf = buf.split(b"\n\n")
            for raw in frames:
                f.frame(raw, now)
    finally:
        writer.close()


async def run(plan: Plan, followers: int) -> dict[str, Any]:
    follows = [Follow(t) for t in plan.tasks[:followers]]
    conns = await asyncio.gather(*(connect(f.t) for f in follows))
    t0 = await asyncio.to_thread(handshake)
    for f in follows:
        f.window = (t0 + plan.warmup, t0 + plan.warmup + plan.seconds)
    await asyncio.gather(*(follow(f, c) for f, c in zip(follows, conns, strict=True)))
    lag = [x for f in follows for x in f.lag]
    lag_post = [x for f in follows for x in f.lag_post]
    return {
        "followers": len(follows),
        "seen": {f.t.id: f.deltas for f in follows},
        "ended": sum(f.ended for f in follows),
        "problems": {f.t.id: f.problems for f in follows if f.problems},
        "lag": summary(lag),
        "lag_from_post": summary(lag_post),
    }


def main() -> None:
    plan = Plan.load(Path(sys.argv[1]))
    finish(asyncio.run(run(plan, int(sys.argv[2]))))


if __name__ == "__main__":
    main()
