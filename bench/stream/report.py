"""The figures of one store's run, and the markdown table of all of them."""

from __future__ import annotations

from typing import Any

LAG_TARGET_MS = 250.0


def figures(r: dict[str, Any], o: Any) -> dict[str, Any]:
    """What the table shows, from the raw run (`o`: the run's options)."""
    senders = [s for s in r["senders"] if "error" not in s]
    acked = sum(s["acked_in_window"] for s in senders)
    posts = sum(s["posts"] for s in senders)
    per_k = acked / 1000 or float("nan")
    cpu = r["cpu_ms"]
    servers = [k for k in cpu if k.startswith("server_")]
    fol = r["followers"]
    lag = fol.get("lag", {})
    errors = [s["error"] for s in r["senders"] if "error" in s] + ([fol["error"]] if "error" in fol else [])
    return {
        "store": r["store"],
        "replicas": r["replicas"],
        "target_events_per_s": o.tasks * o.rate,
        "events_per_s": round(acked / o.seconds, 1),
        "achieved_vs_target": round(acked / o.seconds / (o.tasks * o.rate), 3),
        "lag_ms": lag,
        "lag_from_post_ms": fol.get("lag_from_post", {}),
        "p99_vs_250ms": round(lag.get("p99_ms", float("nan")) / LAG_TARGET_MS, 2),
        "sender_late_p99_ms": max((s["late"]["p99_ms"] for s in senders), default=None),
        "sender_late_max_ms": max((s["late"]["max_ms"] for s in senders), default=None),
        "backlog_max_events": sum(s["backlog_max"] for s in senders),
        "drain_s": max((s["drain_s"] for s in senders), default=None),
        "posts_per_s": round(posts / (o.warmup + o.seconds), 1),
        "events_per_post": round(sum(s["acked"] for s in senders) / max(1, posts), 1),
        "retries": sum(s["retries"] for s in senders),
        "cpu_ms_per_1k_events": {k: round(v / per_k, 1) for k, v in cpu.items()},
        "server_cpu_ms_per_1k_events": round(sum(cpu[k] for k in servers) / per_k, 1),
        # Per request, not per event: what a batch costs whatever its size.
        "server_cpu_ms_per_post": round(
            sum(cpu[k] for k in servers) / max(1, sum(s["posts_in_window"] for s in senders)), 2
        ),
        "server_cores": round(sum(cpu[k] for k in servers) / (o.seconds * 1000), 2),
        "server_peak_rss_mb": r["server_peak_rss_mb"],
        "machine": r["machine"],
        "integrity": r["integrity"],
        "ok": r["integrity"]["ok"] and not errors,
        "errors": errors,
    }


def _n(v: Any, fmt: str = ".0f") -> str:
    return "—" if v is None else format(v, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| store | events/s (× target) | lag p50 / p95 / p99 / max ms | p99 × 250 ms | from post p99 ms "
        "| senders late p99 / max ms, drain s | events/post (server CPU ms/post) | CPU ms / 1,000 events: server (per replica) "
        "| senders | followers | PostgreSQL | server cores | other load, cores | server peak RSS MB "
        "| stored once, all seen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        lag, c = f["lag_ms"], f["cpu_ms_per_1k_events"]
        per = " + ".join(_n(c[k], ".1f") for k in sorted(c) if k.startswith("server_"))
        i = f["integrity"]
        lines.append(
            f"| {f['store']}{' ×2' if f['replicas'] > 1 else ''} "
            f"| {_n(f['events_per_s'])} ({f['achieved_vs_target']:.2f}) "
            f"| {_n(lag.get('p50_ms'))} / {_n(lag.get('p95_ms'))} / {_n(lag.get('p99_ms'))} / {_n(lag.get('max_ms'))} "
            f"| {f['p99_vs_250ms']:.2f} | {_n(f['lag_from_post_ms'].get('p99_ms'))} "
            f"| {_n(f['sender_late_p99_ms'])} / {_n(f['sender_late_max_ms'])}, {_n(f['drain_s'], '.1f')} "
            f"| {f['events_per_post']:.1f} ({f['server_cpu_ms_per_post']:.1f}) "
            f"| {f['server_cpu_ms_per_1k_events']:.1f}{f' ({per})' if f['replicas'] > 1 else ''} "
            f"| {_n(c.get('senders'), '.1f')} | {_n(c.get('followers'), '.1f')} | {_n(c.get('postgresql'), '.1f')} "
            f"| {f['server_cores']:.2f} | {f['machine']['others_cores']:.2f} "
            f"| {' / '.join(_n(x) for x in f['server_peak_rss_mb'])} "
            f"| {'yes' if f['ok'] else 'NO'} ({i['stored']}/{i['sent']}, {i['followers_ok']} followers ok) |"
        )
    return "\n".join(lines)
