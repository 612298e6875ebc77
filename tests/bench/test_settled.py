"""bench.bench.settled: the latency phases start once a new server's commits stop notifying
(`meta_agent_commits_notify 0`). A PostgreSQL replica notifies for its first 2 s and reads
its rows before each commit meanwhile: a bench that started at once measured most of its
dispatch samples on that slower path (found under #15). Served over real HTTP here, by a
stand-in that answers /metrics as the control plane does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import bench


class _Metrics(ThreadingHTTPServer):
    def __init__(self, notifying_scrapes: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.notifying_scrapes = notifying_scrapes  # scrapes that still say 1; -1: always
        self.scrapes = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Metrics

    def do_GET(self) -> None:
        srv = self.server
        srv.scrapes += 1
        notifying = srv.notifying_scrapes < 0 or srv.scrapes <= srv.notifying_scrapes
        body = (
            "# HELP meta_agent_commits_notify 1 while ...\n# TYPE meta_agent_commits_notify gauge\n"
            f"meta_agent_commits_notify {'1.0' if notifying else '0.0'}\n"
        ).encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server(request: pytest.FixtureRequest) -> Iterator[_Metrics]:
    srv = _Metrics(request.param)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("metrics_server", [3], indirect=True)
def test_settled_returns_once_commits_stop_notifying(metrics_server: _Metrics) -> None:
    asyncio.run(bench.settled(f"http://127.0.0.1:{metrics_server.server_port}", timeout=10))
    assert metrics_server.scrapes == 4  # three that still notified, then the one that did not


@pytest.mark.parametrize("metrics_server", [-1], indirect=True)
def test_a_server_that_keeps_notifying_is_an_error_not_a_wait(metrics_server: _Metrics) -> None:
    with pytest.raises(SystemExit, match="another replica listens on its database"):
        asyncio.run(bench.settled(f"http://127.0.0.1:{metrics_server.server_port}", timeout=0.3))
    assert metrics_server.scrapes >= 2
