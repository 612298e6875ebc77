"""`make bench-peers`: meta-agent beside Celery + Redis and procrastinate + PostgreSQL.

Stdlib only at import time: the peers' own virtualenvs import `bench.peers.side_*`, and they
have nothing of the project installed.
"""
