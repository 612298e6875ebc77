"""`python -m bench.peers.client SYSTEM --samples N --tasks N`: a peer's client, in its venv."""

from __future__ import annotations

import importlib
import sys

from bench.peers.driver import main

if __name__ == "__main__":
    side = importlib.import_module(f"bench.peers.side_{sys.argv.pop(1)}")
    with side.connected():
        main(side.enqueue)
