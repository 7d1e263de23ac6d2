"""Applying ``update`` messages to a ``state``, as a client does (the JS client does the same)."""

from __future__ import annotations

from typing import Any

Msg = dict[str, Any]
STATE_FIELDS = ("workspace", "seq", "holder", "viewers", "queue", "request", "locks")


def apply_update(state: Msg, update: Msg) -> Msg:
    """The state ``update`` leads to from ``state`` (whose ``seq`` must be the update's ``base``)."""
    assert update["base"] == state["seq"], f"update from {update['base']} applied to state {state['seq']}"
    new = {k: state.get(k) for k in STATE_FIELDS}
    new["seq"] = update["seq"]
    for field in ("holder", "queue", "request"):
        if field in update:
            new[field] = update[field]
    viewers = {v["user"]["id"]: v for v in state.get("viewers") or []}
    for user in update.get("left", []):
        viewers.pop(user, None)
    for v in [*update.get("joined", []), *update.get("viewers", [])]:
        viewers[v["user"]["id"]] = v
    new["viewers"] = sorted(viewers.values(), key=lambda v: (v["user"]["name"], v["user"]["id"]))
    if "locks" in update:  # the named locks that changed: a holder, or null when freed
        locks = {**(state.get("locks") or {}), **update["locks"]}
        new["locks"] = {lock: h for lock, h in sorted(locks.items()) if h is not None} or None
    if update.get("change") is not None:
        new["change"] = update["change"]
    return new


def comparable(state: Msg) -> Msg:
    """What must agree between a rebuilt state and a snapshot (not ``change``, which names the
    latest change and is not part of the workspace's state)."""
    return {k: state.get(k) for k in STATE_FIELDS if k != "seq"}
