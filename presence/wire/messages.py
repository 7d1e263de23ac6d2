"""The wire protocol of ``/ws``: every message struct and the one decoder.

Frames are JSON text objects tagged by ``type``. Client messages form one tagged union decoded
by :data:`decode_client`; server messages are encoded with :func:`encode`. Optional fields that
are unset are omitted from the JSON rather than sent as ``null``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

# Request ids are echoed back verbatim; clients use strings or small integers.
RequestId = str | int | None

Scope = Literal["user", "tab"]
"""Whom a lease belongs to: all of the holder's tabs (``user``) or the one that took it (``tab``)."""

ReleaseReason = Literal["released", "taken_over", "expired", "lost", "revoked", "idle"]
"""Why a tab no longer holds a lease (``released.reason``)."""

DeclineReason = Literal["declined", "timeout", "cancelled", "cooldown"]
"""Why a polite request ended without the lease (``declined.reason``): the holder declined, did
not answer in time, the requester cancelled, or a takeover at the deadline was refused by the
takeover cooldown."""

WORKSPACE_RE = re.compile(r"[A-Za-z0-9._~:@/-]{1,200}")
TAB_RE = re.compile(r"[A-Za-z0-9._~:@-]{1,128}")
MAX_META_BYTES = 1024
MAX_REQUEST_MESSAGE = 500

LOCK_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
Lock = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{0,64}$")]
"""A lock id: 1-64 characters of A-Z a-z 0-9 . _ : -; ``""`` (the default) is the workspace's own lease."""


class _Message(msgspec.Struct, tag_field="type", omit_defaults=True, forbid_unknown_fields=False):
    pass


# -- client to server ---------------------------------------------------------------------------


class Hello(_Message, tag="hello"):
    workspace: str
    tab: str
    token: str | None = None  # missing: closed 4401 like a bad token, so clients fetch a new one
    client: str | None = None


class Acquire(_Message, tag="acquire"):
    id: RequestId = None
    lock: Lock = ""
    wait: bool = False


class Takeover(_Message, tag="takeover"):
    id: RequestId = None
    lock: Lock = ""


class Release(_Message, tag="release"):
    id: RequestId = None
    lock: Lock = ""


class Pong(_Message, tag="pong"):
    n: int


class Status(_Message, tag="status"):
    """This tab's presence: ``active``, and ``meta`` (a JSON object shared with everyone in the
    workspace; ``null`` clears it, absent keeps it)."""

    id: RequestId = None
    active: bool | None = None
    meta: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class Request(_Message, tag="request"):
    """Politely ask the holder for the lease."""

    id: RequestId = None
    lock: Lock = ""
    message: str = ""


class Decline(_Message, tag="decline"):
    """The holder keeps the lease and turns the pending request down."""

    id: RequestId = None
    lock: Lock = ""


class Sync(_Message, tag="sync"):
    """Send me a fresh ``state`` (after a gap in ``update``s)."""

    id: RequestId = None


class Refresh(_Message, tag="refresh"):
    """A new token for this connection (the same user) before the old one expires."""

    token: str
    id: RequestId = None


ClientMessage = Hello | Acquire | Takeover | Release | Pong | Status | Request | Decline | Sync | Refresh

_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)


def decode_client(frame: str | bytes) -> ClientMessage:
    """Decode one client frame; raises ``msgspec.DecodeError`` (or ``ValidationError``) with a
    message that names the offending field, which is sent back to the client as is."""
    try:
        return _decoder.decode(frame)
    except RecursionError:  # JSON nested deeper than the decoder goes: invalid JSON like any other
        raise msgspec.DecodeError("JSON is nested too deeply") from None


# -- server to client ---------------------------------------------------------------------------


SERVICE_PREFIX = "svc:"  # user ids of service holders (backend jobs); no token may claim one


class Person(msgspec.Struct, frozen=True, omit_defaults=True):
    """A user, or a backend job holding a lease over the HTTP API (``service``: its id starts
    with ``svc:``, which no token's ``sub`` may)."""

    id: str
    name: str
    service: bool = False

    def __post_init__(self) -> None:
        # Derived from the id wherever the person was built or decoded, so every message that names
        # a service holder (holder, from, by) flags it without each place having to know.
        if self.id.startswith(SERVICE_PREFIX) and not self.service:
            msgspec.structs.force_setattr(self, "service", True)


class HolderView(msgspec.Struct, omit_defaults=True):
    user: Person
    since_ms: int
    tabs: int
    fence: int | None = None


class TabPresence(msgspec.Struct):
    """One live tab of a viewer: its connection id (from its ``welcome``), whether it is active,
    and the meta it shares (``null``: none)."""

    conn: str
    active: bool
    meta: dict[str, Any] | None


class Viewer(msgspec.Struct):
    user: Person
    tabs: int
    active: bool
    presence: list[TabPresence] = []


class Change(msgspec.Struct, omit_defaults=True, rename={"from_": "from"}):
    kind: str
    user: Person | None = None
    from_: Person | None = None
    lock: str = ""  # a named lock's change ('': the workspace's lease)


class RequestView(msgspec.Struct):
    by: Person
    message: str
    deadline_at: int  # epoch ms, Redis clock


class StateView(msgspec.Struct, omit_defaults=False):
    workspace: str
    seq: int
    holder: HolderView | None
    viewers: list[Viewer]
    queue: list[Person] = []
    request: RequestView | None = None
    locks: dict[str, HolderView] | msgspec.UnsetType = msgspec.UNSET  # the named locks that are held


class Welcome(_Message, tag="welcome"):
    conn: str
    user: Person
    workspace: str
    heartbeat_ms: int
    lease_ttl_ms: int
    scope: str
    state: StateView
    expires_in_ms: int | None = None  # the token's time left, when it has an ``exp``
    read_only: bool = False  # the token's ``lease`` claim is false: presence only, no lease


class State(_Message, tag="state"):
    workspace: str
    seq: int
    holder: HolderView | None
    viewers: list[Viewer]
    queue: list[Person]
    request: RequestView | None
    change: Change | None = None
    locks: dict[str, HolderView] | None = None  # the named locks that are held (absent: none)


class Update(_Message, tag="update"):
    """What changed since ``base`` (the tab's current ``seq``), leading to ``seq``. Only what
    changed is present: ``holder`` (the new holder view, or null), ``joined`` (entries of users who
    arrived), ``left`` (ids of users who left), ``viewers`` (entries of users whose tabs or
    activity changed), ``queue`` and ``request`` whole. Applied in order to the snapshot of
    ``welcome``, updates yield the ``state`` a new tab would get at that ``seq``."""

    workspace: str
    seq: int
    base: int
    change: Change | None = None
    holder: HolderView | msgspec.UnsetType | None = msgspec.UNSET
    joined: list[Viewer] | msgspec.UnsetType = msgspec.UNSET
    left: list[str] | msgspec.UnsetType = msgspec.UNSET
    viewers: list[Viewer] | msgspec.UnsetType = msgspec.UNSET
    queue: list[Person] | msgspec.UnsetType = msgspec.UNSET
    request: RequestView | msgspec.UnsetType | None = msgspec.UNSET
    locks: dict[str, HolderView | None] | msgspec.UnsetType = msgspec.UNSET  # named locks changed (null: freed)


class Acquired(_Message, tag="acquired"):
    fence: int
    ttl_ms: int
    id: RequestId = None
    lock: str = ""
    rejoined: bool = False


class Busy(_Message, tag="busy"):
    holder: HolderView
    id: RequestId = None
    lock: str = ""


class Queued(_Message, tag="queued"):
    position: int
    id: RequestId = None
    lock: str = ""


class Released(_Message, tag="released"):
    reason: ReleaseReason
    id: RequestId = None
    lock: str = ""
    by: Person | None = None


class Asked(_Message, tag="asked"):
    """Reply to ``request``: the holder was asked and has ``deadline_ms`` to answer."""

    holder: HolderView
    deadline_ms: int
    id: RequestId = None
    lock: str = ""


class Requested(_Message, tag="requested"):
    """To the holder's tabs: someone asks for the lease."""

    by: Person
    deadline_ms: int
    message: str = ""
    lock: str = ""


class Declined(_Message, tag="declined"):
    """A request ended without handing the lease over: declined, timeout or cancelled."""

    reason: DeclineReason
    id: RequestId = None
    lock: str = ""
    by: Person | None = None


class Ping(_Message, tag="ping"):
    n: int
    ttl_ms: int | None = None
    ttls: dict[str, int] | None = None  # the time left of each named lock the tab holds


class Refreshed(_Message, tag="refreshed"):
    """The new token of a ``refresh`` is the connection's from now on."""

    id: RequestId = None
    expires_in_ms: int | None = None


class Error(_Message, tag="error"):
    code: str
    message: str
    id: RequestId = None


ServerMessage = (
    Welcome | State | Update | Acquired | Busy | Queued | Released | Asked | Requested | Declined | Ping
    | Refreshed | Error
)

_encoder = msgspec.json.Encoder()


def encode(message: ServerMessage) -> str:
    return _encoder.encode(message).decode()


def valid_workspace(workspace: str) -> bool:
    """1-200 characters of the id alphabet, and no ``.`` or ``..`` segment: ids travel in URL
    paths, where browsers and HTTP clients resolve those (``a/../b`` would act on ``b``)."""
    if WORKSPACE_RE.fullmatch(workspace) is None:
        return False
    return "." not in workspace or all(segment not in (".", "..") for segment in workspace.split("/"))


def valid_tab(tab: str) -> bool:
    return TAB_RE.fullmatch(tab) is not None
