"""Control: operator commands for every server process, over the pub/sub control channel.

Every process already subscribes to ``<prefix>:control`` (pub/sub); each message on that
channel comes to :meth:`Control.on_message`. A command is acted on by whichever process it concerns
(a tab lives on exactly one process), so the sender need not know where that is. On Redis Cluster
the channel uses classic ``PUBLISH``, which reaches every node's subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from ..gateway.gateway import Gateway

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
    """``close`` closes a tab if it is one of this process's: ``close(conn, code, reason)``, True if it was."""

    def __init__(
        self, server_id: str, channel: str, gateway: Gateway, close: Callable[[str, int, str], bool]
    ) -> None:
        self.server_id = server_id
        self.channel = channel
        self.gateway = gateway
        self._close = close

    def close_local(self, conn: str, reason: str) -> bool:
        if conn.rpartition("-")[0] != self.server_id:
            return False  # conn ids are '<server>-<n>': not one of ours
        if not self._close(conn, CLOSED_BY_OPERATOR, reason or "closed by an operator"):
            return False
        log.info("tab %s closed by an operator: %s", conn, reason or "(no reason given)")
        return True

    async def close_tab(self, conn: str, reason: str) -> None:
        """Close tab ``conn`` on whichever process has it. Raises ``StoreUnavailable``."""
        if not self.close_local(conn, reason):
            await self.gateway.publish(self.channel, _encoder.encode(CloseTab(conn, reason)))

    def on_message(self, data: str) -> None:
        try:
            command = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.warning("ignoring a malformed control message (%s): %.200r", exc, data)
            return
        if isinstance(command, CloseTab):
            self.close_local(command.conn, command.reason)
