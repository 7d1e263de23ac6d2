"""Bodies: a request's body, read no further than a cap.

``Request.body()`` reads whatever the client sends into memory before anyone can look at its
size; this stops at the cap (or at once, when the declared ``Content-Length`` is over it).
"""

from __future__ import annotations

from starlette.requests import Request


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
