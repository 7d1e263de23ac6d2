"""An identity provider of the test's own: signing keys (:class:`Signer`) and a key set served over
HTTP(S) on 127.0.0.1 (:class:`KeySetServer`) that can rotate its keys, drip, grow huge or go down."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from procs import ServerProcess, TlsFiles, free_port
from wsclient import Tab

from presence.signing import JwksKeys


class Signer:
    """A private key of the 'identity provider', with its kid and algorithm."""

    def __init__(self, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        self.private: Any = rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(
            ec.SECP256R1()
        )

    def token(self, user: str, ttl_s: int = 600, **headers: Any) -> str:
        now = int(time.time())
        claims = {"sub": user, "name": user.title(), "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}  # no "alg": the key's type says it

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


class KeySetServer:
    """``GET /jwks.json`` on a free port: the current key set; counts the requests.

    ``mode`` makes it a bad provider: ``drip`` sends its answer (status line and headers too) one
    byte every ``drip_s``; ``huge`` pads the key set to ``huge_bytes`` (``declare``: with its
    Content-Length, else until it closes). ``dropped`` is set once a client hung up on a drip."""

    def __init__(self, port: int | None = None, tls: TlsFiles | None = None) -> None:
        self.keys: list[dict[str, Any]] = []
        self.scheme = "https" if tls else "http"
        self.requests = 0
        self.mode = "serve"
        self.drip_s = 0.2
        self.huge_bytes = 4 << 20
        self.declare = True
        self.dropped = threading.Event()
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                if owner.mode == "huge":
                    body = body[:-1] + b', "padding": "' + b"x" * owner.huge_bytes + b'"}'
                status = 200 if self.path == "/jwks.json" else 404
                head = f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\n"
                if owner.mode != "huge" or owner.declare:
                    head += f"Content-Length: {len(body)}\r\n"
                answer = head.encode() + b"\r\n" + body
                try:
                    if owner.mode == "drip":
                        for i in range(len(answer)):
                            if owner.stopping.wait(owner.drip_s):
                                return
                            self.wfile.write(answer[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(answer)
                except OSError:
                    owner.dropped.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert, tls.key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


async def started(running: list[JwksKeys], keys: JwksKeys) -> JwksKeys:
    running.append(keys)
    await keys.prepare()
    return keys


async def hello_outcome(server: ServerProcess, token: str, tabs: list[Tab]) -> str | int | None:
    """``"welcome"``, or the close code of a hello with ``token``."""
    tab = Tab(server.ws_url, "someone", "doc")
    tab.token = token
    tabs.append(tab)
    await tab.connect(expect_welcome=False)
    try:
        await tab.expect("welcome")
    except AssertionError:
        return tab.closed_code
    return "welcome"


async def eventually_welcome(server: ServerProcess, token: str, tabs: list[Tab], timeout: float = 5.0) -> None:
    """Hellos with ``token`` until one is welcomed (a key the server is fetching in the background)."""
    deadline = time.monotonic() + timeout
    while (outcome := await hello_outcome(server, token, tabs)) != "welcome":
        assert outcome == 4401 and time.monotonic() < deadline, outcome
        await asyncio.sleep(0.1)


def weak_rsa_jwk(kid: str) -> tuple[Any, dict[str, Any]]:
    """A 1024-bit RSA key (a PEM key of this size is refused at start-up) and its JWK."""
    private = rsa.generate_private_key(65537, 1024)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**jwk, "kid": kid, "use": "sig"}


def signed(private: Any, kid: str, alg: str) -> str:
    return jwt.encode({"sub": "eve", "exp": int(time.time()) + 600}, private, algorithm=alg, headers={"kid": kid})
