"""`make cluster`: a local multi-replica cluster to try scale-out on one machine.

Two control-plane replicas on the local PostgreSQL (database `meta_agent_cluster`, created
and migrated if missing) and three workers spread over them, with the example agents.
Ctrl-C stops everything. Settings: META_AGENT_CLUSTER_PG (admin URL of the server),
META_AGENT_CLUSTER_PORTS (default 8081,8082).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN = os.environ.get("META_AGENT_CLUSTER_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PORTS = [int(p) for p in os.environ.get("META_AGENT_CLUSTER_PORTS", "8081,8082").split(",")]
DB = "meta_agent_cluster"


def main() -> int:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{DB}"
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "meta-agent", "db", "upgrade", "--database-url", url], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_AGENT_")}
    env["META_AGENT_DATABASE_URL"] = url
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(PORTS):
            extra = {"META_AGENT_PORT": str(port), "META_AGENT_EMBEDDED_WORKER": "false"}
            if i == 0:
                extra["META_AGENT_EXAMPLES"] = str(ROOT / "examples/agents.yaml")
            procs.append(subprocess.Popen([bin_ / "meta-agent", "serve"], env={**env, **extra}))
        bases = [f"http://127.0.0.1:{p}" for p in PORTS]
        for base in bases:
            for _ in range(300):
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        for i in range(3):
            wenv = {**env, "META_AGENT_URL": bases[i % len(bases)]}
            procs.append(
                subprocess.Popen(
                    [bin_ / "meta-agent", "worker", "start", "--queue", "default", "--concurrency", "4"],
                    env=wenv,
                )
            )
        print("\ncluster up:", file=sys.stderr)
        for base in bases:
            print(f"  replica  {base}/  (API docs {base}/docs)", file=sys.stderr)
        print(f"  database {url}\n  3 workers on queue 'default'\nCtrl-C to stop.", file=sys.stderr)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    raise SystemExit(main())
