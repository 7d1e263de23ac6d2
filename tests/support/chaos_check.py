"""Correctness checker for lease histories recorded under faults (used by test_chaos and test_faults).

Every lock is judged on its own. A workspace has its own lease (lock ``""``) and any number of
named locks (``"title"``, ``"cell:B7"``), each an independent lease with its own fences, holder and
windows: below, a **lease** is one lock of one workspace, ``(workspace, lock)``. Lease messages
and events about a named lock carry ``lock`` (absent: the workspace's own lease); a ``ping`` gives
the time left of the own lease in ``ttl_ms`` and of each named lock in ``ttls``. Windows on two
locks of one workspace never conflict; one lock's grant never excuses, ends or explains another's.

Two sources of truth are combined:

- **What each client was told**, in the order and at the (monotonic) time it received it: every
  client records its messages plus two marks of its own, ``_release_sent`` with ``lock`` (it asked
  to release that lock: from then on it no longer edits under it) and ``_closed`` with
  ``voluntary`` (it closed the tab itself, or lost the connection).
- **What Redis did**, from an observer (``chaos_observer``) subscribed to every workspace channel on a
  connection no fault touches: each lease event with its sequence number, lock, new holder, ended
  holder and kind. The sequence number is the workspace's, shared by its locks: a gap means the
  observer itself missed something, and the check refuses to judge rather than guess.

A **validity window** is the time during which a client may believe it holds a lease (the time it
would let its user edit under it). For one logical client (a user's tab id, across reconnects),
one lock and one fence, it opens when the client receives ``acquired`` of that lock with that
fence and closes at the earliest of:

- receiving ``released`` of that lock (any reason);
- sending ``release`` of that lock (``_release_sent``) or closing the tab voluntarily;
- its *local deadline*: the time of the last ``acquired``/``ping`` received for it plus that
  message's time left (``ttl_ms``, or the lock's entry in ``ttls``). A message that arrives after
  the deadline has passed does not revive the window (a late ``acquired`` with the same fence
  opens a new one).

A connection that dies does not close a window: a disconnected client keeps its deadline. A
window is half-open, [start, end): one that closes where it opens gives no time to edit and
overlaps nothing. A server sends such an ``acquired`` (``ttl_ms`` 0) when its local deadline for
the lease has passed: after a stall, to a new tab of the holder's user that joins before the
process has heard what happened meanwhile (docs/correctness.md, A stalled process).

The checks, per lease (workspace and lock):

1. **Fences strictly increase** in Redis order: every grant's fence is above every earlier one.
2. **No overlap**: windows of different users never overlap, except where Redis ended the earlier
   lease by an explicit act (``taken_over``, ``released`` by another tab of the same user,
   ``revoked``, ``idle``) - the old holder cannot know before it happens, which is what fences are
   for - and then only if the later grant has the higher fence. The end that counts is one before
   the later grant: after a failover the history that went back may hold the earlier lease again
   and end it again, later and otherwise. A lease that *expired* gives no such excuse: its holder
   must have stopped before anyone else could start ("the holder knows first").
3. **Nobody keeps a lost lease silently**: every window of a fence that Redis ended must close no
   later than ``notify_bound`` after the observer saw the end (told, or its deadline, which a
   server stopped from renewing cannot extend); windows still open at the end of the run must be
   of the fence Redis still holds. A server that was paused tells its tabs, once it runs again,
   what happened meanwhile, in order: a grant that ended meanwhile and its end arrive together
   (docs/correctness.md, A stalled process). Such a window opens after the end and must close within ``notify_bound``
   of opening.
4. Every fence a client was granted was granted by Redis, on that lock, to that client's user.

With Redis failovers (Sentinel), :class:`FailoverObserver` listens on every data node at once
(replicated events arrive twice and count once) and the history may go back: a failover can
promote a replica that missed the last events. Then events are put in Redis order by their Redis
time (``at``, one clock: every node runs on this machine) and sequence number, and check 1 covers
every grant of every history, lost ones included: no fence may ever go back. A lease event that
ends a holder other than the lock's current one means the lock's history went back: its current
lease was lost in the failover (``failover`` end) and the one it ends had lived on. Within a
history the sequence numbers still count up by one: a jump means the observer missed events (a
link to a node was down, e.g. just after Sentinel killed its clients), and the check refuses to
judge, as without failovers, rather than report a grant it never saw as one Redis never made.

A grant lost in a failover is the WAIT trade-off of docs/deployment.md: without
``PRESENCE_REDIS_WAIT_REPLICAS`` (``wait_replicas`` 0) a grant is confirmed before a replica has
it, so a failover can lose a grant its holder was told of. Then the one overlap it causes is
excused (its holder learns at its next renewal or by its deadline, while the surviving history
goes on). With ``wait_replicas`` > 0 a tab is told of a grant only once the replicas have it, so
a failover can lose none that a tab was told of:

5. With ``wait_replicas`` > 0, no client holds a fence whose grant a failover lost.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field

from chaos_observer import Msg, Observer

EXPLICIT_ENDS = {"taken_over", "released", "revoked", "idle"}

LeaseId = tuple[str, str]  # (workspace, lock); lock "" is the workspace's own lease


def label(workspace: str, lock: str) -> str:
    """How a violation names a lease: ``w1`` (the workspace's own), ``w1[title]`` (a named lock)."""
    return f"{workspace}[{lock}]" if lock else workspace


@dataclass
class Window:
    workspace: str
    user: str
    client: str
    fence: int
    start: float
    end: float
    why: str  # released:<reason> | release_sent | closed | deadline | open
    lock: str = ""


@dataclass
class Lease:
    """One grant as Redis made it."""

    workspace: str
    fence: int
    user: str
    seq: int
    granted_at: float  # observer receipt time
    kind: str  # acquired | taken_over
    lock: str = ""
    ended_at: float | None = None  # the last end (a failover can bring a lease back, to end again)
    end_kind: str | None = None
    ends: list[tuple[float, str]] = field(default_factory=list)  # every end, in Redis order

    def end(self, at: float, kind: str) -> None:
        self.ended_at, self.end_kind = at, kind
        self.ends.append((at, kind))


@dataclass
class Report:
    windows: int = 0
    grants: int = 0
    violations: list[str] = field(default_factory=list)
    grants_by_lock: dict[str, int] = field(default_factory=dict)  # lock id -> grants, all workspaces

    def __str__(self) -> str:
        head = f"{self.grants} grants, {self.windows} client validity windows, {len(self.violations)} violations"
        if any(self.grants_by_lock):  # named locks: how the grants spread over the lock ids
            head += f" (grants per lock {self.grants_by_lock})"
        return "\n  ".join([head, *self.violations[:30]])


def windows(log: list[Msg], workspace: str, user: str, client: str, end_time: float) -> list[Window]:
    """The validity windows in one client's message log, of every lock (see the module docstring)."""
    out: list[Window] = []
    cur: dict[str, Window] = {}  # lock -> its open window
    deadline: dict[str, float] = {}  # lock -> the open window's local deadline

    def close(lock: str, at: float, why: str) -> None:
        w = cur.pop(lock)
        w.end, w.why = max(w.start, at), why
        out.append(w)

    for m in log:
        t = m["_t"]
        for lock in [lock for lock in cur if deadline[lock] <= t]:
            close(lock, deadline[lock], "deadline")
        kind = m["type"]
        lock = m.get("lock") or ""
        if kind == "acquired":
            if lock in cur and cur[lock].fence != m["fence"]:
                close(lock, t, "replaced")
            if lock not in cur:
                cur[lock] = Window(workspace, user, client, m["fence"], t, t, "open", lock)
            deadline[lock] = t + m["ttl_ms"] / 1000
        elif kind == "ping":
            left = {**(m.get("ttls") or {}), **({"": m["ttl_ms"]} if m.get("ttl_ms") is not None else {})}
            for held in cur.keys() & left.keys():
                deadline[held] = t + left[held] / 1000
        elif kind == "released" and lock in cur:
            close(lock, t, f"released:{m.get('reason')}")
        elif kind == "_release_sent" and lock in cur:
            close(lock, t, "release_sent")
        elif kind == "_closed" and m.get("voluntary"):
            for held in list(cur):
                close(held, t, "closed")
    for lock, w in list(cur.items()):
        if deadline[lock] <= end_time:
            close(lock, deadline[lock], "deadline")
        else:
            w.end, w.why = end_time, "open"
            out.append(w)
    return out


def lease_history(observer: Observer, report: Report) -> dict[LeaseId, list[Lease]]:
    """Grants per lease (workspace, lock) in Redis order, with how and when (observed) each ended."""
    if observer.error is not None:
        report.violations.append(f"observer failed: {observer.error!r}")
    out: dict[LeaseId, list[Lease]] = {}
    for ws, events in observer.events.items():
        events = observer.ordered(events)
        # One sequence per workspace, whatever lock an event is about. Across failovers a history
        # that went back repeats sequence numbers: only a jump forward is a gap.
        missing = [(ta, tb, b) for (ta, a), (tb, b) in itertools.pairwise((t, int(e["seq"])) for t, e in events)
                   if (b > a + 1 if observer.failover else b != a + 1)]
        if missing:
            ta, tb, _ = missing[0]
            report.violations.append(f"{ws}: the observer missed events before seq {[b for _, _, b in missing[:5]]}"
                                     f"{observer.blind(ta, tb)} (cannot judge)")
        by_lock: dict[str, list[tuple[float, Msg]]] = defaultdict(list)
        for at, e in events:
            if e.get("lease"):
                by_lock[e.get("lock") or ""].append((at, e))
        for lock, lock_events in by_lock.items():
            out[(ws, lock)] = _grants(observer, ws, lock, lock_events, report)
    return out


def _grants(observer: Observer, ws: str, lock: str, events: list[tuple[float, Msg]], report: Report) -> list[Lease]:
    """One lock's grants from its lease events (in Redis order), each holder record naming the
    lock's current holder or, across failovers, one its history went back to."""
    grants: list[Lease] = []
    by_fence: dict[int, Lease] = {}
    current: Lease | None = None
    for at, e in events:
        prev, new = e.get("prev"), e.get("holder")
        if prev is not None and (current is None or int(prev["fence"]) != current.fence):
            if not observer.failover:
                report.violations.append(
                    f"{label(ws, lock)}: seq {e['seq']} ended fence {prev['fence']} but "
                    f"{current.fence if current else 'nobody'} was the holder"
                )
            else:  # the history went back: the current lease was lost, prev's lived on
                if current is not None:
                    current.end(at, "failover")
                current = by_fence.get(int(prev["fence"]))
        if current is not None:  # every lease event replaces the holder
            # A grant over a holder it does not name: that holder was lost in a failover.
            lost = observer.failover and prev is None and new is not None
            current.end(at, "failover" if lost else e["kind"])
            current = None
        if new:
            current = Lease(ws, int(new["fence"]), new["user"], int(e["seq"]), at, e["kind"], lock)
            grants.append(current)
            by_fence[current.fence] = current
    return grants


def check(
    logs: dict[tuple[str, str, str], list[Msg]], observer: Observer, end_time: float, notify_bound: float,
    final_holders: dict[LeaseId, int | None], wait_replicas: int = 0,
) -> Report:
    """Judge a run. ``logs``: (workspace, user, client) -> that client's message log, ordered.
    ``final_holders``: the fence each lease key (workspace, lock) holds at ``end_time`` (None or
    absent: free). ``wait_replicas``: the servers' ``PRESENCE_REDIS_WAIT_REPLICAS`` (check 5 and
    the excuse for a grant lost in a failover)."""
    report = Report()
    leases = lease_history(observer, report)
    by_lease: dict[LeaseId, list[Window]] = defaultdict(list)
    for (ws, user, client), log in logs.items():
        for w in windows(log, ws, user, client, end_time):
            by_lease[(ws, w.lock)].append(w)
    for lease in sorted(set(by_lease) | set(leases)):
        grants = leases.get(lease, [])
        report.grants += len(grants)
        report.grants_by_lock[lease[1]] = report.grants_by_lock.get(lease[1], 0) + len(grants)
        _check_lease(label(*lease), grants, sorted(by_lease.get(lease, []), key=lambda w: w.start),
                     final_holders.get(lease), notify_bound, wait_replicas, report)
    return report


def _check_lease(name: str, grants: list[Lease], lease_windows: list[Window], final: int | None,
                 notify_bound: float, wait_replicas: int, report: Report) -> None:
    """Checks 1-5 of one lease (``name``: its label), its windows sorted by start."""
    report.windows += len(lease_windows)
    by_fence: dict[int, Lease] = {}
    for g in grants:
        by_fence.setdefault(g.fence, g)
    # 1. fences strictly increase in Redis order
    for a, b in itertools.pairwise(grants):
        if b.fence <= a.fence:
            report.violations.append(f"{name}: fence {b.fence} (seq {b.seq}) granted after {a.fence}")
    for w in lease_windows:
        g = by_fence.get(w.fence)
        # 4. the client's fence is one Redis granted, on this lock, to its user
        if g is None or g.user != w.user:
            report.violations.append(f"{name}: {w.client} held fence {w.fence}, which Redis never granted to "
                                     f"{w.user} (granted to {g.user if g else 'nobody'})")
            continue
        # 5. with WAIT, a grant a tab was told of has reached the replicas: no failover loses it
        if wait_replicas and any(kind == "failover" for _, kind in g.ends):
            report.violations.append(
                f"{name}: {w.client} was told of fence {w.fence}, which a failover lost, though "
                f"PRESENCE_REDIS_WAIT_REPLICAS={wait_replicas} confirms a grant only once replicated"
            )
        # 3. nobody keeps a lost lease silently (news told late, in order, closes at once)
        told_late = g.ended_at is not None and w.start > g.ended_at and w.end <= w.start + notify_bound
        if g.ended_at is not None and w.end > g.ended_at + notify_bound and not told_late:
            report.violations.append(
                f"{name}: {w.client} kept fence {w.fence} for {w.end - g.ended_at:.2f}s after Redis ended it "
                f"({g.end_kind}); window ended by {w.why}"
            )
        if w.why == "open" and final != w.fence:
            report.violations.append(f"{name}: {w.client} still holds fence {w.fence} at the end, Redis has {final}")
    # 2. no overlap between different users, unless an explicit act ended the earlier lease
    for i, a in enumerate(lease_windows):
        for b in lease_windows[i + 1 :]:
            if b.start >= a.end or b.end <= b.start:
                continue  # sorted by start: b starts after a ended, or b is empty (so is a when a.end <= b.start)
            if a.user == b.user or a.fence == b.fence:
                continue
            first, second = (a, b) if a.fence < b.fence else (b, a)
            ended = by_fence.get(first.fence)
            later = by_fence.get(second.fence)
            # The end that counts is the one before the later grant: a history that went back
            # may bring the earlier lease back and end it again, later and otherwise.
            before = later.granted_at if later is not None else math.inf
            excused = ended is not None and second.fence > first.fence and any(
                kind in EXPLICIT_ENDS and at <= before for at, kind in ended.ends)
            if not excused and not wait_replicas:
                # A grant lost in a failover (the history went back), told before a replica
                # had it: its holder learns at its next renewal or by its deadline
                # (docs/deployment.md, the WAIT trade-off). With WAIT check 5 has flagged it already.
                excused = any(x is not None and x.end_kind == "failover" for x in (ended, later))
            if not excused:
                report.violations.append(
                    f"{name}: overlap of {(min(a.end, b.end) - b.start) * 1000:.0f} ms: {first.client} fence "
                    f"{first.fence} [{first.why}] and {second.client} fence {second.fence}; Redis ended "
                    f"{first.fence} by {ended.end_kind if ended else '?'}"
                )
