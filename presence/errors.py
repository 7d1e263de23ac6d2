"""Error hierarchy. Each error knows how it reaches the client.

``CloseError`` subclasses end the connection with their WebSocket close code; ``RequestError``
subclasses answer one request with an ``error`` message and keep the connection open.
"""

from __future__ import annotations


class PresenceError(Exception):
    """Base class of every error the server turns into a client-visible answer."""


class CloseError(PresenceError):
    """The connection is closed with ``close_code`` and the message as the close reason."""

    close_code: int = 4400


class ProtocolViolation(CloseError):
    close_code = 4400


class BadToken(CloseError):
    close_code = 4401


class WorkspaceForbidden(CloseError):
    close_code = 4403


class TimedOut(CloseError):
    """No valid hello in time, or a tab that stopped answering pings."""

    close_code = 4408


class TooMany(CloseError):
    """Rate or connection limit exceeded."""

    close_code = 4429


class Overloaded(CloseError):
    """Redis unavailable, or this client could not keep up: retry later."""

    close_code = 1013


class Restarting(CloseError):
    close_code = 1012


class RequestError(PresenceError):
    """One request failed; the reply is ``{"type": "error", "code": code}``."""

    code: str = "error"


class BadMessage(RequestError):
    code = "bad_message"


class RateLimited(RequestError):
    code = "rate_limited"


class RefreshRefused(RequestError):
    """A ``refresh`` whose token is not valid for this connection: the old one stays."""

    code = "bad_token"


class NotHolder(RequestError):
    code = "not_holder"


class TakeoverForbidden(RequestError):
    code = "takeover_forbidden"


class TakeoverCooldown(RequestError):
    """A takeover right after another one: the cooldown stops takeover wars."""

    code = "takeover_cooldown"


class RequestPending(RequestError):
    code = "request_pending"


class NoRequest(RequestError):
    code = "no_request"


class Unavailable(RequestError):
    """Redis did not answer in time; the request may be retried."""

    code = "unavailable"


class StoreUnavailable(PresenceError):
    """Redis could not be reached. Raised by the lease store, translated by its callers."""


class Forbidden(RequestError):
    """The token does not allow this request (a read-only token asking for a lease)."""

    code = "forbidden"


class TooManyLocks(RequestError):
    """Too many named locks held at once, by this tab or in the workspace."""

    code = "too_many_locks"


class TooManyWatched(RequestError):
    """This process watches as many (watcher, workspace) pairs as it may (PRESENCE_MAX_WATCHED)."""

    code = "too_many_watched"
