"""Rules: the domain rules every part of the server shares, each written once.

- *Scope matching*: which tabs a lease belongs to. In scope ``user`` all of the holder's tabs
  hold it; in scope ``tab`` only the tab (by tab id) that acquired it. The Lua scripts keep their
  own copy (``matches`` in ``_lib.lua``); a test checks that both agree.
- *Counting tabs*: by tab id, not by connection: a tab that reconnected while its old
  connection's presence entry has not expired yet (its server died) is one tab.
- *The holder's view*: what tabs, the app API and the dashboard are told of a holder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..wire.messages import Change, HolderView, Person, ReleaseReason, Scope, TabPresence, Viewer
from .events import LEASE_KINDS, Event, LeaseEvent
from .records import HolderRecord, TabInfo


def holds(holder: HolderRecord, user: str, tab: str, scope: Scope) -> bool:
    """Does the lease of ``holder`` belong to tab ``tab`` of ``user``?"""
    return holder.user == user and (scope == "user" or holder.tab == tab)


def tabs_of(infos: Iterable[TabInfo], user: str) -> int:
    """How many tabs ``user`` has among ``infos``, counted by tab id."""
    return len({t.tab for t in infos if t.user == user})


def viewer(infos: Mapping[str, TabInfo]) -> Viewer | None:
    """The viewer entry of one user from that user's presence entries by conn (None: no tab):
    tabs counted by tab id, active if any tab is, and each live tab's presence, by conn."""
    person, tab_ids, active = None, set(), False
    presence = []
    for conn in sorted(infos):
        info = infos[conn]
        person = person or Person(info.user, info.name)
        tab_ids.add(info.tab)
        active = active or info.active
        presence.append(TabPresence(conn, info.active, info.meta))
    return None if person is None else Viewer(person, len(tab_ids), active, presence)


def name_key(viewer: Viewer) -> tuple[str, str]:
    """What ``state.viewers`` is sorted by: display name, then id (ids are unique: so are keys)."""
    return viewer.user.name, viewer.user.id


def by_name(viewers: Iterable[Viewer]) -> list[Viewer]:
    """The order of ``state.viewers``: by display name, then id."""
    return sorted(viewers, key=name_key)


def viewers(infos: Mapping[str, TabInfo]) -> list[Viewer]:
    """One entry per user (by conn: their presence entries), sorted by name."""
    by_user: dict[str, dict[str, TabInfo]] = {}
    for conn, info in infos.items():
        by_user.setdefault(info.user, {})[conn] = info
    return by_name(v for mine in by_user.values() if (v := viewer(mine)) is not None)


def holder_view(holder: HolderRecord, infos: Iterable[TabInfo], with_fence: bool = True) -> HolderView:
    """The holder as tabs see it (``state``, ``busy``, ``asked``) and the HTTP surfaces show it.
    Other users are told no fence (``busy``): a fence is only ever the holder's to send."""
    return HolderView(
        user=holder.person, since_ms=holder.since, tabs=tabs_of(infos, holder.user),
        fence=holder.fence if with_fence else None,
    )


def loss_reason(event: Event | None, after: HolderRecord | None) -> tuple[ReleaseReason, Person | None]:
    """Why a tab's lease ended (``released`` reason and ``by``): the event's reason, else a
    successor means it was taken over, else it expired."""
    if isinstance(event, LeaseEvent) and event.reason:
        by = event.by or (event.user if event.reason == "taken_over" else None)
        return event.reason, by
    if after is not None:
        return "taken_over", after.person
    return "expired", None


UNKNOWN_HOLDER = HolderView(user=Person("", "someone"), since_ms=0, tabs=0)
"""A lease whose holder record is gone (evicted, or expired before the lease key): held by someone
unknown, never nobody, and never an internal error."""


def merged_change(pending: Change | None, new: Change | None) -> Change | None:
    """The ``change`` an update names when it merges several: the latest lease change if there is
    one (who holds it matters more than who came and went), else the latest."""
    if new is None:
        return pending
    if pending is not None and pending.kind in LEASE_KINDS and new.kind not in LEASE_KINDS:
        return pending
    return new
