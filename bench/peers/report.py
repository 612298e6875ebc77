"""The one table: per system and round, dispatch, throughput, ratios to the peers, CPU per task."""

from __future__ import annotations

from typing import Any

LABELS = {
    "celery": "Celery + Redis",
    "procrastinate": "procrastinate + PostgreSQL",
    "sqlite": "meta-agent, SQLite",
    "postgresql": "meta-agent, PostgreSQL",
}
GROUPS = ("server", "workers", "client", "broker")


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's throughput over Celery's and procrastinate's in the same round (None without)."""
    out = []
    for row in rows:
        same = {r["system"]: r["throughput"]["tasks_per_s"] for r in rows if r["round"] == row["round"]}
        tps = row["throughput"]["tasks_per_s"]
        out.append(
            {
                **row,
                "vs_celery": round(tps / same["celery"], 3) if same.get("celery") else None,
                "vs_procrastinate": round(tps / same["procrastinate"], 3)
                if same.get("procrastinate")
                else None,
            }
        )
    return out


def label(row: dict[str, Any]) -> str:
    pool = row.get("config", {}).get("pool")
    return LABELS.get(row["system"], row["system"]) + (f" ({pool} pool)" if pool else "")


def _cpu(cpu: dict[str, float], group: str) -> str:
    return f"{cpu[group]:.2f}" if group in cpu else "—"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown; CPU in ms per task over the throughput phase, '—' where a system has no such process."""
    lines = [
        "| round | system | dispatch p50 / p99 ms | tasks/s | × Celery | × procrastinate "
        "| CPU ms/task: server | workers | client | broker/db | total |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in with_ratios(rows):
        d, t = row["dispatch"], row["throughput"]
        cpu = row["cpu_ms_per_task"]
        lines.append(
            f"| {row['round']} | {label(row)} | {d['p50_ms']:.1f} / {d['p99_ms']:.1f} "
            f"| {t['tasks_per_s']:.0f} | {_fmt(row['vs_celery'])} | {_fmt(row['vs_procrastinate'])} | "
            + " | ".join(_cpu(cpu, g) for g in GROUPS)
            + f" | {sum(cpu.values()):.2f} |"
        )
    return "\n".join(lines)


def _fmt(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"
