"""Replies: the decoding of what each workspace script answers.

A script returns ``{status, detail JSON or '', event JSON...}``. The status word picks the reply
struct of :mod:`presence.core.outcomes` (its msgspec tag) and the detail object fills it; the
events are decoded into the :mod:`~presence.core.events` union.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic

import msgspec

from ..core.events import decode_event
from ..core.outcomes import *  # noqa: F403  (the reply structs, re-exported for the gateway's callers)
from ..core.outcomes import Outcome, R


class ReplyDecoder(Generic[R]):
    """Decodes the replies of one script: ``types`` are the replies it can give."""

    def __init__(self, *types: type[R]) -> None:
        self._decoders = {str(t.__struct_config__.tag): msgspec.json.Decoder(t, strict=False) for t in types}

    def decode(self, reply: Sequence[str], sent_at: float) -> Outcome[R]:
        status, raw, *events = reply
        decoder = self._decoders.get(status)
        if decoder is None:
            raise msgspec.ValidationError(f"unexpected script status {status!r}")
        return Outcome(decoder.decode(raw or "{}"), [decode_event(e) for e in events], sent_at)
