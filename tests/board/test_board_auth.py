"""Auth on the board: the page asks for a key when the server wants one, keeps it for the
tab, follows the streams with it, and shows a read-only key no action buttons."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.board.test_board_live import card
from tests.support import LiveServer


def make_keys(server: LiveServer) -> dict[str, str]:
    with server.client() as c:
        setup_catalog(c)
        keys = {"admin": c.post("/keys", json={"name": "admin-key", "scopes": ["admin"]}).json()["key"]}
    # From the first key on, the server wants one on every call.
    with server.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as c:
        for s in ("viewer", "worker"):
            keys[s] = c.post("/keys", json={"name": f"{s}-key", "scopes": [s]}).json()["key"]
    return keys


def test_viewer_key_sees_the_live_board_without_actions(page: Any, server: LiveServer) -> None:
    keys = make_keys(server)
    page.goto(server.url + "/")
    dialog = page.get_by_role("dialog", name="API key required")
    dialog.get_by_label("API key").fill("not-a-key")
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog.get_by_role("alert")).to_contain_text("not valid")
    dialog.get_by_label("API key").fill(keys["viewer"])
    dialog.get_by_role("button", name="Sign in").click()
    expect(page.locator("#board[data-ready=true]")).to_be_attached()
    expect(page.locator("#who")).to_have_text("viewer-key (viewer)")

    with server.client(headers={"Authorization": f"Bearer {keys['admin']}"}) as admin:
        tid = create(admin, "Watched by a viewer")
        expect(card(page, "pending", tid)).to_be_visible()  # the SSE stream authenticates too
        with server.client(headers={"Authorization": f"Bearer {keys['worker']}"}) as wc:
            w = RawWorker(wc)
            w.claim(tid)
            w.events(tid, ("message_delta", {"delta": "hello viewer"}))
            expect(card(page, "running", tid)).to_be_visible()
            card(page, "running", tid).locator("a").click()
            page.get_by_role("tab", name="Live Output").click()
            expect(page.locator("#tp-output")).to_have_text("hello viewer")
            expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
            w.ask(tid, "Proceed?", ["yes", "no"])
            expect(page.locator("#panel .answer .question")).to_have_text("Proceed?")
            expect(page.locator("#panel .answer button")).to_have_count(0)
    expect(page.get_by_role("button", name="New task")).to_be_hidden()

    # The key is kept for the tab: a reload does not ask again.
    page.reload()
    expect(page.locator("#board[data-ready=true]")).to_be_attached()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(card(page, "requires_input", tid)).to_be_visible()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stream_tokens_work_only_on_stream_gets_and_a_key_never_goes_in_a_url(server: LiveServer) -> None:
    keys = make_keys(server)
    api = server.url + "/api/v1"
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with httpx.Client(timeout=10) as c:
        issued = c.post(api + "/stream-tokens", headers=admin)
        assert issued.status_code == 201
        body = issued.json()
        token = {"access_token": body["token"]}
        assert body["token"].startswith("mst_") and keys["admin"] not in body["token"]
        assert body["expires_in"] == 600
        with c.stream("GET", api + "/board/stream", params=token) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
        assert c.get(api + "/board/stream").status_code == 401
        # The key itself is refused in a URL, with a message saying what to do instead.
        r = c.get(api + "/board/stream", params={"access_token": keys["admin"]})
        assert r.status_code == 401 and r.json()["code"] == "invalid_stream_token"
        assert "stream-tokens" in r.json()["detail"] and keys["admin"] not in r.text
        # A tampered or far-future token is refused.
        head, sig = body["token"].rsplit("_", 1)
        forged = head + "_" + ("0" if sig[0] != "0" else "1") + sig[1:]
        assert c.get(api + "/board/stream", params={"access_token": forged}).status_code == 401
        prefix = body["token"].split("_")[1]
        later = f"mst_{prefix}_{body['expires_at'] + 86400}_{sig}"
        assert c.get(api + "/board/stream", params={"access_token": later}).status_code == 401
        # Not a stream, or not a GET: the query parameter is ignored.
        assert c.get(api + "/board", params=token).status_code == 401
        assert c.get(api + "/whoami", params=token).status_code == 401
        r = c.post(api + "/tasks", params=token, json={"agent": "helper", "prompt": "p"})
        assert r.status_code == 401
        who = c.get(api + "/whoami", headers={"Authorization": f"Bearer {keys['viewer']}"}).json()
        assert who == {"name": "viewer-key", "scopes": ["viewer"]}
        # Revoking the key ends its stream tokens too.
        viewer_token = c.post(
            api + "/stream-tokens", headers={"Authorization": f"Bearer {keys['viewer']}"}
        ).json()
        [row] = [k for k in c.get(api + "/keys", headers=admin).json()["items"] if k["name"] == "viewer-key"]
        assert c.delete(api + f"/keys/{row['id']}", headers=admin).status_code in (200, 204)
        r = c.get(api + "/board/stream", params={"access_token": viewer_token["token"]})
        assert r.status_code == 401
