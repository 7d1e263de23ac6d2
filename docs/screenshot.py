"""Makes docs/demo.png, the README's screenshot: the demo editor as Bob sees it while Alice edits.

    python docs/screenshot.py        # needs the test extra (playwright) and Debian's /usr/bin/chromium

It starts ``presence serve`` (dev mode, embedded store) on a free port, opens ``/demo`` in two
browser contexts (two people), has Alice take the lease and type, and photographs Bob's page,
which shows "Alice is editing" with the choices. Never a downloaded browser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

OUT = Path(__file__).resolve().parent / "demo.png"
CHROMIUM = "/usr/bin/chromium"
TEXT = "Onboarding checklist\n\n1. Laptop and accounts on day one\n2. Meet the team\n3. A first pull request\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "presence", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            pages = {}
            for user, name in (("alice", "Alice"), ("bob", "Bob")):
                context = browser.new_context(viewport={"width": 1000, "height": 620})
                page = context.new_page()
                page.goto(f"{base}/demo?user={user}&name={name}&workspace=onboarding")
                expect(page.locator("#status")).to_have_attribute("data-status", "open")
                pages[user] = page
            alice, bob = pages["alice"], pages["bob"]
            alice.get_by_role("button", name="Edit", exact=True).click()
            expect(alice.locator("#editor")).to_be_enabled()
            alice.locator("#editor").fill(TEXT)
            expect(bob.locator("#banner-text")).to_contain_text("Alice is editing")
            expect(bob.locator("#editor")).to_have_value(TEXT, timeout=10_000)
            bob.screenshot(path=str(OUT), clip={"x": 0, "y": 0, "width": 1000, "height": 450})
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
