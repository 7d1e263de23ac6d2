"""Headers of the HTML pages (``/dashboard``, ``/demo``): what the browser may load and who may frame them.

The pages load their own script and style sheet from ``/static`` and talk to this server only
(``fetch`` and the WebSocket), so the policy allows exactly that: no inline script or style, no
other origin, no plugins, and no framing (``frame-ancestors 'none'``, and ``X-Frame-Options`` for
browsers that predate it), so a page of another site cannot overlay the dashboard's buttons.
The favicon is an empty ``data:`` URL.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # 'self' covers ws:// and wss:// to this same host (CSP Level 3)
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
