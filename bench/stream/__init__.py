"""`make bench-stream`: streaming load (issue #15), see bench/README.md and `__main__.py`."""
