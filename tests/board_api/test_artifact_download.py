"""Artifact downloads name the file for any name a task may give it (RFC 6266)."""

from __future__ import annotations

from urllib.parse import quote

from tests.board_api.test_api import claim, seed
from tests.support import LiveServer


def test_a_non_latin_name_downloads_with_filename_star(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        (item,) = claim(c)
        name = 'out/报告 "final";.md'
        r = c.put(
            f"/tasks/{tid}/artifacts/{quote(name)}",
            content="你好".encode(),
            headers={"content-type": "text/markdown", "X-Lease-Token": item["token"]},
        )
        assert r.status_code == 201, r.text
        r = c.get(f"/tasks/{tid}/artifacts/{quote(name)}")
        assert r.status_code == 200 and r.content == "你好".encode()
        disposition = r.headers["content-disposition"]
        assert disposition == (
            "attachment; filename=\"__ _final__.md\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20%22final%22%3B.md"
        )
