"""The JSON Schema of the wire protocol, generated from the message structs.

    python -m presence.wire.schema           # print it
    python -m presence.wire.schema --write   # write docs/protocol.schema.json (after changing a message)

``docs/protocol.schema.json`` is this output; a test fails when the two drift apart, so the file
always describes the structs the server decodes and encodes (and a new message lands in it by
re-running the command). ``docs/protocol.md`` is the prose reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from .. import docfile
from . import messages, watch

SCHEMA_PATH = Path("docs") / "protocol.schema.json"


def protocol_schema() -> dict[str, Any]:
    """One document: ``ClientMessage`` (what a tab sends) and ``ServerMessage`` (what it receives),
    each a union tagged by ``type``, with every struct they use under ``$defs``."""
    (client, server, watcher, watched), defs = msgspec.json.schema_components(
        [messages.ClientMessage, messages.ServerMessage, watch.WatcherMessage, watch.WatchServerMessage],
        ref_template="#/$defs/{name}",
    )
    defs["WatcherMessage"] = {
        "description": "A frame a watcher sends on /ws (a connection whose first frame is `watch`).", **watcher,
    }
    # A watcher also gets the pings and plain errors a tab gets. Two members share the tag `error`
    # (a plain one, and `forbidden` naming the workspaces left out), so this union has no discriminator.
    watched.pop("discriminator", None)
    defs["WatchServerMessage"] = {
        "description": "A frame a watcher receives: `leases`, `lease`, `ping`, and `error` (plain, or `forbidden` "
                       "with the workspaces it names).",
        "anyOf": [*watched["anyOf"], {"$ref": "#/$defs/Ping"}, {"$ref": "#/$defs/Error"}],
    }
    defs["ClientMessage"] = {
        "description": "A frame a client sends on /ws: a JSON object tagged by `type`. The first one is `hello`.",
        **client,
    }
    defs["ServerMessage"] = {"description": "A frame the server sends on /ws: a JSON object tagged by `type`.",
                             **server}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "presence WebSocket protocol (/ws)",
        "description": (
            "Every frame on /ws is one JSON text message, tagged by `type`. Generated from the message "
            "structs of presence/wire/messages.py and presence/wire/watch.py by "
            "`python -m presence.wire.schema --write`; "
            "docs/protocol.md describes each message."
        ),
        # anyOf, not oneOf: a frame may belong to two of them (`pong` is sent by tabs and watchers,
        # `ping` and `error` received by both).
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"},
                  {"$ref": "#/$defs/WatcherMessage"}, {"$ref": "#/$defs/WatchServerMessage"}],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(protocol_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    raise SystemExit(docfile.main(sys.argv[1:], render, SCHEMA_PATH, "presence.wire.schema"))
