"""The demo's documents (dev mode): every save carries the fence, and a stale one is refused with why.

In process, on the embedded store: two tabs over the app's own WebSocket take the lease from each
other while their saves go to ``PUT /demo/docs/{id}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from wsclient import token

from presence.http import dev
from presence.http.app import create_app
from presence.settings import Settings


@pytest.fixture
def app() -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as client:  # with: the lifespan runs (embedded store)
        yield client


class Writer:
    """One user: a tab holding (or not) the lease of ``doc-1``, and saves with its token."""

    def __init__(self, app: TestClient, user: str, workspace: str = "doc-1", **token_kw: Any) -> None:
        self.app = app
        self.workspace = workspace
        self.token = token(user, **token_kw)
        self.ws = app.websocket_connect("/ws").__enter__()
        self.ws.send_json({"type": "hello", "token": self.token, "workspace": workspace, "tab": f"{user}-tab"})
        assert self.ws.receive_json()["type"] == "welcome"

    def ask(self, kind: str, lock: str = "") -> int:
        self.ws.send_json({"type": kind, "id": 1, **({"lock": lock} if lock else {})})
        while (m := self.ws.receive_json()).get("id") != 1:
            pass
        assert m["type"] == "acquired", m
        return int(m["fence"])

    def save(self, text: str, fence: int, lock: str = "", **kw: Any) -> Any:
        return self.app.put(f"/demo/docs/{self.workspace}", json={"text": text, "fence": fence},
                            params={"lock": lock} if lock else None,
                            headers={"Authorization": f"Bearer {self.token}"}, **kw)

    def close(self) -> None:
        self.ws.__exit__(None, None, None)


def test_saves_carry_the_fence_and_stale_ones_are_told_why(app: TestClient) -> None:
    alice, bob = Writer(app, "alice"), Writer(app, "bob")
    try:
        assert app.get("/demo/docs/doc-1").json() == {
            "workspace": "doc-1", "text": "", "fence": None, "saved_by": None, "saved_at_ms": None, "version": 0,
        }
        a = alice.ask("acquire")
        assert alice.save("Alice's draft", a).json()["saved"] is True
        seen = app.get("/demo/docs/doc-1").json()  # what every browser shows
        assert (seen["text"], seen["fence"], seen["saved_by"], seen["version"]) == (
            "Alice's draft", a, {"id": "alice", "name": "Alice"}, 1)

        # Bob takes over: Alice's next save is refused before Bob has saved anything...
        b = bob.ask("takeover")
        assert b > a
        refused = alice.save("Alice, still typing", a)
        assert refused.status_code == 409
        assert refused.json() == {
            "saved": False, "reason": "not_holder", "by": {"id": "bob", "name": "Bob"}, "fence": b,
            "message": "Bob took the lease after you",
        }
        # ... and after he saved, it is his save that she is told about
        assert bob.save("Bob's rewrite", b).status_code == 200
        refused = alice.save("Alice, still typing", a)
        assert refused.status_code == 409
        body = refused.json()
        assert body["reason"] == "saved_after" and body["by"] == {"id": "bob", "name": "Bob"}
        assert body["message"] == "Bob saved a newer version after you (version 2)"
        assert body["fence"] == b  # the fence is for programs; the message is for people
        assert app.get("/demo/docs/doc-1").json()["text"] == "Bob's rewrite"  # untouched by the refusals

        # a made-up fence, even a higher one, does not hold the lease either
        assert alice.save("forged", b + 1).json()["reason"] == "not_holder"
        # nor does Bob's own fence in Alice's hands
        assert alice.save("borrowed", b).json()["reason"] == "not_holder"
        # released: nobody holds it, so nobody may save
        bob.ws.send_json({"type": "release", "id": 2})
        while bob.ws.receive_json().get("type") != "released":
            pass
        assert bob.save("after release", b).json()["message"] == "your edit lease has ended and nobody holds it now"
    finally:
        alice.close()
        bob.close()


def test_a_field_is_saved_under_the_fence_of_its_own_named_lock(app: TestClient) -> None:
    alice, bob = Writer(app, "alice"), Writer(app, "bob")
    try:
        title = alice.ask("acquire", lock="title")
        assert alice.save("Q3 plan", title, lock="title").json()["saved"] is True
        seen = app.get("/demo/docs/doc-1", params={"lock": "title"}).json()
        assert (seen["lock"], seen["text"], seen["fence"]) == ("title", "Q3 plan", title)
        assert seen["saved_by"] == {"id": "alice", "name": "Alice"}
        # each field is a document of its own, and none is the workspace's
        assert app.get("/demo/docs/doc-1").json()["version"] == 0
        assert "lock" not in app.get("/demo/docs/doc-1").json()
        assert app.get("/demo/docs/doc-1", params={"lock": "notes"}).json()["text"] == ""
        # a fence of one lock does not write another, nor the workspace's document
        refused = alice.save("notes", title, lock="notes").json()
        assert refused["message"] == "your edit lock on notes has ended and nobody holds it now"
        assert alice.save("whole", title).json()["reason"] == "not_holder"
        # while Alice has the title, Bob holds the notes: both save at once
        notes = bob.ask("acquire", lock="notes")
        assert bob.save("Ask Carol", notes, lock="notes").status_code == 200
        assert alice.save("Q3 plan, v2", title, lock="title").status_code == 200
        # Bob takes the title over: Alice is refused and told why
        taken = bob.ask("takeover", lock="title")
        assert taken > title
        refused = alice.save("Q3 plan, v3", title, lock="title").json()
        assert (refused["reason"], refused["fence"]) == ("not_holder", taken)
        assert refused["message"] == "Bob took the lock on title after you"
        assert app.get("/demo/docs/doc-1", params={"lock": "title"}).json()["text"] == "Q3 plan, v2"
        assert app.get("/demo/docs/doc-1", params={"lock": "bad lock"}).status_code == 400
        assert bob.save("x", taken, lock="x" * 65).status_code == 400
    finally:
        alice.close()
        bob.close()


def test_saves_need_a_valid_token_body_and_workspace(app: TestClient) -> None:
    carol = Writer(app, "carol", workspace="team/notes", workspaces=["team/*"])
    try:
        fence = carol.ask("acquire")
        url = "/demo/docs/team/notes"
        assert app.put(url, json={"text": "x", "fence": fence}).status_code == 401
        assert app.put(url, json={"text": "x", "fence": fence},
                       headers={"Authorization": "Bearer nonsense"}).status_code == 401
        assert carol.save("x", fence).status_code == 200
        assert app.put(url, content=b'{"text": 1}', headers={"Authorization": f"Bearer {carol.token}"}
                       ).status_code == 400
        assert carol.save("x" * (dev.MAX_TEXT + 1), fence).status_code == 413
        other = app.put("/demo/docs/elsewhere", json={"text": "x", "fence": fence},
                        headers={"Authorization": f"Bearer {carol.token}"})
        assert other.status_code == 403  # the token's ws claim does not allow it
        assert app.get("/demo/docs/bad%20id").status_code == 400
    finally:
        carol.close()


def test_the_store_is_bounded(app: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "MAX_DOCUMENTS", 3)
    writers = [Writer(app, f"u{i}", workspace=f"doc-{i}") for i in range(5)]
    try:
        for w in writers:
            assert w.save(f"text of {w.workspace}", w.ask("acquire")).status_code == 200
        kept = [app.get(f"/demo/docs/doc-{i}").json()["version"] for i in range(5)]
        assert kept == [0, 0, 1, 1, 1]  # the least recently used went first
    finally:
        for w in writers:
            w.close()


def test_the_demo_mints_no_token_for_a_service_id(app: TestClient) -> None:
    r = app.get("/demo/token", params={"user": "svc:import"})
    assert r.status_code == 400 and "reserved for backend jobs" in r.json()["error"]
    assert app.get("/demo/list").status_code == 200
