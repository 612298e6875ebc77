"""What the store imports on SQLite: psycopg takes ~0.1 s to import and SQLite needs none of
it (store.db opens store.pg_fast only for a PostgreSQL URL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sqlite_path_does_not_import_psycopg() -> None:
    # A fresh interpreter: other tests of this process import psycopg on purpose.
    code = (
        "import sys, store.fastpath, store.statemachine, store.work, board_api.app\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported on the SQLite path'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
