"""Control: operator commands for every server process, over the pub/sub control channel.

Every process's bridge already subscribes to ``<prefix>:control``; the hub hands each message on
that channel to :meth:`Control.on_message`. A command is acted on by whichever process it concerns
(a tab lives on exactly one process), so the sender need not know where that is. On Redis Cluster
the channel uses classic ``PUBLISH``, which reaches every node's subscribers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from .errors import StoreUnavailable

if TYPE_CHECKING:
    from .hub import Hub
    from .tab import Tab

log = logging.getLogger("presence.control")

CLOSED_BY_OPERATOR = 4000
"""Close code of a tab closed from the admin API. Clients treat it like any non-fatal close and
reconnect (with backoff): closing resets a stuck tab; revoking a lease is the separate action."""


class CloseTab(msgspec.Struct, tag="close_tab", tag_field="op"):
    conn: str
    reason: str = ""


Command = CloseTab  # a tagged union as soon as there is a second command

_decoder = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


class Control:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.channel = hub.bridge.control_channel

    def find(self, conn: str) -> Tab | None:
        if conn.rpartition("-")[0] != self.hub.server_id:
            return None  # conn ids are '<server>-<n>': not one of ours
        for room in self.hub.rooms.values():
            tab = room.tabs.get(conn)
            if tab is not None:
                return tab
        return None

    def close_local(self, conn: str, reason: str) -> bool:
        tab = self.find(conn)
        if tab is None:
            return False
        log.info("%r closed by an operator: %s", tab, reason or "(no reason given)")
        tab.close(CLOSED_BY_OPERATOR, reason or "closed by an operator")
        return True

    async def close_tab(self, conn: str, reason: str) -> None:
        """Close tab ``conn`` on whichever process has it. Raises ``StoreUnavailable``."""
        if self.close_local(conn, reason):
            return
        try:
            await self.hub.store.client.publish(self.channel, _encoder.encode(CloseTab(conn, reason)))
        except Exception as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc

    def on_message(self, data: str) -> None:
        try:
            command = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.warning("ignoring a malformed control message (%s): %.200r", exc, data)
            return
        if isinstance(command, CloseTab):
            self.close_local(command.conn, command.reason)
