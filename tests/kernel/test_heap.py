"""Once a long-running process is up, its start-up heap is out of the cyclic GC's way: a full
collection, which stops the event loop, then traverses only what came after (kernel.loop)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import ROOT, child_env

# In a child process: freezing is for the whole process, and this one runs other tests.
PROBE = """
import gc, json
import board_api.app, store.db  # a server's worth of modules, schemas and compiled regexes
from kernel.loop import YOUNG_THRESHOLD, settle_heap
gc.collect()
before = len(gc.get_objects(2))
frozen = settle_heap()
print(json.dumps({"before": before, "after": len(gc.get_objects(2)), "frozen": frozen,
                  "threshold": gc.get_threshold(), "young": YOUNG_THRESHOLD}))
"""


def test_a_full_collection_no_longer_traverses_the_start_up_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["before"] > 50_000  # what every full collection walked
    assert r["frozen"] > 0.9 * r["before"] and r["after"] < 1_000
    assert r["threshold"][0] == r["young"] > 700
