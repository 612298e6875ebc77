"""The first key is an admin key, and the last admin key cannot be revoked (open mode
must not come back, and someone must be able to manage keys)."""

from __future__ import annotations

from tests.board_api.test_api import claim, problem, seed
from tests.support import LiveServer


def test_the_first_key_must_be_admin(server: LiveServer) -> None:
    with server.client() as c:
        for scopes in (["viewer"], ["operator", "worker"]):
            body = problem(
                c.post("/keys", json={"name": "x", "scopes": scopes}), 409, "first_key_must_be_admin"
            )
            assert "--scope admin" in body["detail"]
        assert c.get("/keys").json()["items"] == []  # still open: nothing was created
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"authorization": f"Bearer {admin}"}) as a:
        assert a.post("/keys", json={"name": "eyes", "scopes": ["viewer"]}).status_code == 201


def test_the_last_admin_key_cannot_be_revoked(server: LiveServer) -> None:
    with server.client() as c:
        first = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()
    with server.client(headers={"authorization": f"Bearer {first['key']}"}) as a:
        viewer = a.post("/keys", json={"name": "eyes", "scopes": ["viewer"]}).json()
        body = problem(a.delete(f"/keys/{first['id']}"), 409, "last_admin_key")
        assert "create another admin key" in body["detail"]
        assert a.delete(f"/keys/{viewer['id']}").status_code == 200
        second = a.post("/keys", json={"name": "root2", "scopes": ["admin", "operator"]}).json()
        assert a.delete(f"/keys/{first['id']}").json()["revoked_at"]
    with server.client(headers={"authorization": f"Bearer {second['key']}"}) as b:
        problem(b.delete(f"/keys/{second['id']}"), 409, "last_admin_key")
        assert [k["name"] for k in b.get("/keys").json()["items"] if not k["revoked_at"]] == ["root2"]
    server.app.state.key_cache.invalidate()
    with server.client() as anon:
        problem(anon.get("/tasks"), 401, "unauthorized")  # never open again


def test_answering_a_question_needs_operator(server: LiveServer) -> None:
    """An answer can approve a risky step: a viewer key only watches."""
    with server.client() as c:
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"authorization": f"Bearer {admin}"}) as a:
        seed(a)
        made = {
            s: a.post("/keys", json={"name": s, "scopes": [s]}).json()["key"] for s in ("viewer", "operator")
        }
        tid = a.post("/tasks", json={"agent": "echo", "prompt": "deploy"}).json()["id"]
        (item,) = claim(a)
        asked = a.post(f"/tasks/{tid}/request-input", json={"token": item["token"], "question": "Approve?"})
        assert asked.json()["status"] == "requires_input"
    with server.client(headers={"authorization": f"Bearer {made['viewer']}"}) as v:
        problem(v.post(f"/tasks/{tid}/input", json={"answer": "yes"}), 403, "insufficient_scope")
        assert v.get(f"/tasks/{tid}").json()["status"] == "requires_input"
    with server.client(headers={"authorization": f"Bearer {made['operator']}"}) as o:
        assert o.post(f"/tasks/{tid}/input", json={"answer": "yes"}).json()["status"] == "pending"
