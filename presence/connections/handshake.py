"""Handshake: what a connection's first frame says it is.

The first frame must arrive within ``PRESENCE_HELLO_TIMEOUT_MS`` (else 4408, whatever else the
client sends: WebSocket pings never reach this far) and decide the connection's role: ``hello``
makes it a tab, ``watch`` a watcher (a list page). Anything else, or ids that are not valid,
closes it with 4400. The token is checked next, by :mod:`~presence.connections.credential`.
"""

from __future__ import annotations

import msgspec

from ..errors import ProtocolViolation
from ..wire.messages import Hello, decode_client, valid_tab, valid_workspace
from ..wire.watch import MAX_WATCHED, Watch, decode_first

WORKSPACE_RULE = "1-200 characters of A-Z a-z 0-9 . _ ~ : @ / -, no . or .. segment"
TAB_RULE = "1-128 characters of A-Z a-z 0-9 . _ ~ : @ -"


def first_frame(frame: str | bytes) -> Hello | Watch:
    """The first frame, decoded and its ids checked; ``ProtocolViolation`` (4400) otherwise."""
    try:
        first = decode_first(frame)
    except msgspec.MsgspecError as exc:
        try:
            decode_client(frame)
        except msgspec.MsgspecError:
            raise ProtocolViolation(str(exc)) from None
        raise ProtocolViolation("the first message must be hello") from None  # (or watch)
    problem = hello_problem(first) if isinstance(first, Hello) else watch_problem(first)
    if problem is not None:
        raise ProtocolViolation(problem)
    return first


def hello_problem(hello: Hello) -> str | None:
    if not valid_workspace(hello.workspace):
        return f"invalid workspace id: {WORKSPACE_RULE}"
    if not valid_tab(hello.tab):
        return f"invalid tab id: {TAB_RULE}"
    return None


def watch_problem(watch: Watch) -> str | None:
    """What is wrong with a ``watch`` frame's ids, or None."""
    if len(watch.workspaces) > MAX_WATCHED:
        return f"at most {MAX_WATCHED} workspaces per watch"
    for ws in watch.workspaces:
        if not valid_workspace(ws):
            return f"invalid workspace id {ws[:200]!r}: {WORKSPACE_RULE}"
    if watch.tab is not None and not valid_tab(watch.tab):
        return f"invalid tab id: {TAB_RULE}"
    return None
