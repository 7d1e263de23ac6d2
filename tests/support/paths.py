"""Where the checkout is, for tests that read its files or run its programs, and what it ships."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the server serves from static/, and package-data ships in the wheel.
STATIC_FILES = [
    "presence.js", "presence.d.ts", "react.js", "react.d.ts", "package.json", "demo.html", "demo.css", "demo.js",
    "dashboard.html", "dashboard.css", "dashboard.js", "demo-list.html", "demo-list.js", "demo-form.html",
    "demo-form.js", "demo-page.js", "demo-carets.js",
]
