"""Lease view: a workspace as read from outside the serving path (the HTTP API for app backends,
a service holder's 409, the operators' dashboard), computed straight from one snapshot by the
rules tabs see it by (:mod:`~presence.core.rules`): no replica is built for it.
"""

from __future__ import annotations

import msgspec

from ..wire.messages import HolderView, Viewer
from . import rules
from .records import Snapshot, TabInfo, decode_info


class LeaseView(msgspec.Struct):
    """One lock's lease: its holder (tabs counted by tab id), the fence of the grant, the time
    left (0 when free) and how many users view the workspace."""

    holder: HolderView | None
    fence: int | None
    ttl_ms: int
    viewers: int


def tab_infos(snapshot: Snapshot) -> dict[str, TabInfo]:
    """The live tabs' presence entries by conn (foreign or corrupt entries left out)."""
    out: dict[str, TabInfo] = {}
    for conn, raw in (snapshot.tabs or {}).items():
        if (info := decode_info(raw)) is not None:
            out[conn] = info
    return out


def viewers(snapshot: Snapshot) -> list[Viewer]:
    return rules.viewers(tab_infos(snapshot))


def lease_view(snapshot: Snapshot, lock: str = "", with_fence: bool = True) -> LeaseView:
    """``lock``'s lease (``""``: the workspace's own) as the snapshot shows it. Without
    ``with_fence`` the holder is shown as other users see it (a 409's body)."""
    infos = tab_infos(snapshot)
    record = snapshot.lock(lock)
    h = record.holder
    users = len({info.user for info in infos.values()})
    if h is None:
        return LeaseView(None, None, 0, users)
    holder = rules.holder_view(h, [info for info in infos.values() if info.user == h.user], with_fence)
    return LeaseView(holder, h.fence, max(0, record.ttl_ms), users)
