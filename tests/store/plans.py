"""What PostgreSQL's generic plan of a hot statement does beside a crowded table: a prepared
statement is planned once for any parameters after a few runs, from the columns' statistics
and not the values, so a plan that is good for today's values can read the whole table."""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from store import fastdriver as fd


def generic_plan(
    db_url: str,
    sql: bytes,
    params: list[Any],
    *,
    crowd: tuple[str, str, str],
    rows: int,
) -> list[dict[str, Any]]:
    """The nodes on `tasks` of `sql`'s generic plan, run with `params` (EXPLAIN ANALYZE, in a
    transaction rolled back) beside `rows` copies of task `crowd[0]` with queue `crowd[1]`
    and status `crowd[2]`. The copied task itself is gone meanwhile (a statement may insert it
    again)."""
    task_id, queue, status = crowd
    dsn = sa.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    others = ", ".join(
        {"id": "md5(g::text)", "queue": f"'{queue}'", "status": f"'{status}'"}.get(c, c) for c in fd.COLS
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        marks = ", ".join(["%s"] * len(params))
        cur = psycopg.ClientCursor(conn)
        conn.execute(
            f"INSERT INTO tasks ({', '.join(fd.COLS)}) SELECT {others} "
            f"FROM tasks, generate_series(1, {rows}) g WHERE id = %s",
            [task_id],
        )
        conn.execute("DELETE FROM task_events WHERE task_id = %s", [task_id])
        conn.execute("DELETE FROM tasks WHERE id = %s", [task_id])
        conn.execute("DELETE FROM audit_log WHERE target_id = %s", [task_id])
        conn.execute("ANALYZE tasks")
        psycopg.RawCursor(conn).execute(b"PREPARE hot AS " + sql)
        ((plan,),) = cur.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE hot({marks})", params
        ).fetchall()
        conn.rollback()
    nodes: list[dict[str, Any]] = []
    todo: list[dict[str, Any]] = [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return [n for n in nodes if n.get("Relation Name") == "tasks"]


def reads_only_its_own(on_tasks: list[dict[str, Any]]) -> bool:
    """No scan of the table, no row read only to be filtered out, and no index scan reading
    more than a few pages: one that read on past its range reads the crowd's index entries
    (a bound that is an index condition but does not end the scan) without a filter."""
    scans = [n for n in on_tasks if "Scan" in n["Node Type"]]
    return (
        bool(scans)
        and all(n["Node Type"] != "Seq Scan" for n in scans)
        and sum(n.get("Rows Removed by Filter", 0) for n in on_tasks) == 0
        and max(n["Shared Hit Blocks"] + n["Shared Read Blocks"] for n in scans) <= PAGES
    )


PAGES = 12  # a descent of a 3,000-row index (2 levels), a few heap pages; reading on past: 25 or more
