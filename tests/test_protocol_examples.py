"""The protocol's documents validate as what they claim to be: every example frame of
docs/protocol.md is valid under docs/protocol.schema.json (as the message its `type` names, sent in
the direction the example shows), the schema itself is a valid JSON Schema whose root accepts every
kind of frame (`pong` included, which two unions share) and rejects what is none, and
docs/openapi.json is a valid OpenAPI document whose every operation has a unique operationId and an
example of its success answer that validates against that answer's schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "protocol.schema.json").read_text())
OPENAPI: dict[str, Any] = json.loads((ROOT / "docs" / "openapi.json").read_text())
SENT = ("ClientMessage", "WatcherMessage")  # what a client sends
RECEIVED = ("ServerMessage", "WatchServerMessage")  # what it receives


def validator(ref: str) -> Draft202012Validator:
    """A validator of one $defs entry, resolving refs within the whole document."""
    return Draft202012Validator({**SCHEMA, "anyOf": [{"$ref": f"#/$defs/{ref}"}]})


def message_def(tag: str) -> list[str]:
    """The $defs whose `type` is `tag`."""
    return [name for name, d in SCHEMA["$defs"].items()
            if d.get("properties", {}).get("type", {}).get("enum") == [tag]]


def json_blocks() -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in re.findall(r"```json\n(.*?)\n```", PROTOCOL, re.S)]


def transcript_frames() -> list[tuple[str, dict[str, Any]]]:
    """The frames of the ```text transcripts (`→` sent, `←` received) that are whole JSON: a frame
    continues on the indented lines under its arrow; ones shortened with `...` are left out."""
    frames: list[tuple[str, dict[str, Any]]] = []
    for block in re.findall(r"```text\n(.*?)\n```", PROTOCOL, re.S):
        current: list[str] = []
        for line in [*block.splitlines(), "→ end"]:
            if line.startswith(("→", "←")) or not line.startswith(" "):
                if current:
                    text = " ".join(current)
                    try:
                        frames.append((text[0], json.loads(text[1:])))
                    except json.JSONDecodeError:
                        assert "..." in text or "…" in text, f"an example frame that is not JSON: {text}"
                current = [line] if line.startswith(("→", "←")) else []
            elif current:
                current.append(line.strip())
    return frames


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("frame", [
    {"type": "pong", "n": 3},  # tabs and watchers both send it
    {"type": "ping", "n": 1, "ttl_ms": 900},
    {"type": "error", "code": "rate_limited", "message": "slow down"},
    {"type": "error", "code": "forbidden", "message": "no", "workspaces": ["hr/x"]},
    {"type": "watch", "workspaces": ["a"], "token": "t"},
    {"type": "lease", "workspace": "a", "holder": None, "viewers": 0},
], ids=lambda f: f["type"])
def test_the_root_accepts_every_kind_of_frame(frame: dict[str, Any]) -> None:
    assert list(Draft202012Validator(SCHEMA).iter_errors(frame)) == []


@pytest.mark.parametrize("frame", [
    {"type": "ping"},  # no n
    {"type": "teleport"},
    {"type": "acquired", "fence": "7", "ttl_ms": 100},
    [],
], ids=["no-n", "unknown-type", "fence-as-string", "not-an-object"])
def test_the_root_rejects_what_is_no_frame(frame: Any) -> None:
    assert list(Draft202012Validator(SCHEMA).iter_errors(frame)) != []


def test_a_watcher_receives_pings_and_plain_errors() -> None:
    watched = validator("WatchServerMessage")
    assert watched.is_valid({"type": "ping", "n": 1})
    assert watched.is_valid({"type": "error", "code": "bad_message", "message": "what"})
    assert not watched.is_valid({"type": "welcome"})


def test_every_json_example_of_protocol_md_is_its_message() -> None:
    examples = json_blocks()
    assert len(examples) >= 10
    for frame in examples:
        (name,) = message_def(frame["type"]) if frame["type"] != "error" else ["Error"]
        errors = [e.message for e in validator(name).iter_errors(frame)]
        assert errors == [], (frame, errors)


def test_every_whole_frame_of_the_transcripts_goes_the_way_it_shows() -> None:
    frames = transcript_frames()
    assert len(frames) >= 10
    for arrow, frame in frames:
        unions = SENT if arrow == "→" else RECEIVED
        ok = any(validator(union).is_valid(frame) for union in unions)
        assert ok, f"{arrow} {frame} is not a valid frame of {' or '.join(unions)}"


def test_the_transcript_check_bites() -> None:
    """A sent frame shown as received, or a field of the wrong type, fails."""
    assert not any(validator(u).is_valid({"type": "acquire", "id": "1"}) for u in RECEIVED)
    assert not any(validator(u).is_valid({"type": "acquired", "fence": 1.5, "ttl_ms": 1}) for u in RECEIVED)


# -- OpenAPI ------------------------------------------------------------------------------------


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in OPENAPI["paths"].items() for method, op in ops.items()]


def test_the_openapi_document_is_valid() -> None:
    validate_openapi(OPENAPI)


def test_every_operation_has_a_unique_operation_id() -> None:
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(isinstance(i, str) and re.fullmatch(r"[a-z][A-Za-z0-9]+", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the document's components, for a validator."""
    return {**schema, "components": OPENAPI["components"]}


@pytest.mark.parametrize(("path", "method"), [(p, m) for p, m, _ in operations()])
def test_every_answer_with_a_body_has_a_valid_example(path: str, method: str) -> None:
    op = OPENAPI["paths"][path][method]
    examples = 0
    for status, response in op["responses"].items():
        media = response.get("content", {}).get("application/json")
        if media is None:
            continue
        assert "example" in media or status >= "400", f"{method} {path} {status} has no example"
        if "example" in media:
            examples += 1
            schema = _resolve(media["schema"])
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(media["example"])]
            assert errors == [], (status, errors)
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        assert "example" in body, f"{method} {path}: the request body has no example"
        errors = [e.message for e in Draft202012Validator(_resolve(body["schema"])).iter_errors(body["example"])]
        assert errors == [], errors
    assert examples >= 1 or op["responses"].keys() == {"101"}


def test_openapi_json_is_built_once_and_served_as_the_committed_document(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from presence.http import openapi
    from presence.http.app import create_app
    from presence.settings import Settings

    built = []
    original = openapi.openapi
    monkeypatch.setattr(openapi, "openapi", lambda: built.append(1) or original())
    openapi.render.cache_clear()
    try:
        client = TestClient(create_app(Settings(secret="s" * 40)))
        bodies = [client.get("/openapi.json") for _ in range(3)]
    finally:
        openapi.render.cache_clear()
    assert len(built) == 1
    assert all(r.status_code == 200 and r.content == bodies[0].content for r in bodies)
    served = json.loads(bodies[0].content)
    served["info"].pop("version")
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    committed["info"].pop("version")
    assert served == committed
