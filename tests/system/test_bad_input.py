"""Bad input, table-driven: every bad input gets its exact close code or error, and a lease
holder on the same server (same workspace where the input can reach one) is untouched by it.

Each case runs against one of two real ``presence serve`` processes with a secret configured:
``strict`` has no Origin allow-list (same-origin rule) and ``listed`` allows one origin. After the
case, the holder must still have its fence, must not have been told ``released``, must keep
being renewed (its pings carry a healthy ``ttl_ms`` at the usual pace), and another user asking
for the lease must get ``busy`` naming the holder.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
import pytest
import websockets
from procs import RedisServer, ServerProcess, wait_until
from servers import FAST, Cluster
from websockets.asyncio.client import ClientConnection
from wsclient import Tab

from presence.connections.output import CLOSE_TIMEOUT_S
from presence.wire.messages import decode_client

SECRET = "bad-input-test-secret-" + "0123456789abcdef" * 3  # 70 bytes: long enough for HS512 too
MAX_TABS = 4
SEND_QUEUE = 32
ALLOWED = "https://app.example.com"
HEARTBEAT_S = 0.5
TTL_MS = 4000  # the holder survives its server being stalled a second or two by a busy machine
COMMON = {
    "PRESENCE_HEARTBEAT_MS": str(int(HEARTBEAT_S * 1000)),
    "PRESENCE_LEASE_TTL_MS": str(TTL_MS),
    "PRESENCE_SECRET": SECRET,
    "PRESENCE_MAX_TABS_PER_USER": str(MAX_TABS),
    "PRESENCE_SEND_QUEUE_SIZE": str(SEND_QUEUE),
    # A slow consumer cannot answer pings either: give it time to overflow before it counts as dead.
    "PRESENCE_DEAD_AFTER_MS": "15000",
}


@dataclass
class Servers:
    strict: ServerProcess  # secret set, no allow-list: same-origin rule; default rate limit
    listed: ServerProcess  # secret set, PRESENCE_ALLOWED_ORIGINS=ALLOWED; high rate limits (slow consumers)


@pytest.fixture(scope="module")
def procs(redis_server: RedisServer) -> Iterator[Servers]:
    cluster = Cluster(redis_server.url, f"bad{uuid.uuid4().hex[:8]}")
    try:
        yield Servers(
            cluster.server("strict", **COMMON),
            cluster.server("listed", **COMMON, PRESENCE_ALLOWED_ORIGINS=ALLOWED, PRESENCE_RATE_LIMIT="1000",
                           PRESENCE_USER_RATE_LIMIT="1000"),
        )
    finally:
        cluster.close()


def token(user: str = "mallory", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": user, "name": user.title(), "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def signed(payload: str) -> str:
    """An HS256 token around a payload no JSON library would write (nested too deep, say)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head = b64(b'{"alg": "HS256", "typ": "JWT"}') + "." + b64(payload.encode())
    return head + "." + b64(hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest())


def hello(workspace: str, tok: str | None = None, tab: str = "t1", **extra: Any) -> str:
    msg: dict[str, Any] = {"type": "hello", "workspace": workspace, "tab": tab, **extra}
    msg["token"] = token() if tok is None else tok
    return json.dumps(msg)


def decoder_message(frame: str | bytes) -> str:
    try:
        decode_client(frame)
    except msgspec.MsgspecError as exc:
        return str(exc)[:120]
    raise AssertionError(f"{frame!r} decodes")


# -- the holder whose lease must be untouched ---------------------------------------------------


class Holder:
    def __init__(self, tab: Tab, fence: int, server: ServerProcess) -> None:
        self.tab = tab
        self.fence = fence
        self.server = server
        self.mark = len(tab.messages)

    async def assert_untouched(self) -> None:
        tab = self.tab
        # Keeps being renewed: over the next three pings its deadline moves later (a lease that is
        # no longer renewed only counts down, then ends with 'released lost').
        start = len(tab.messages)
        pings = []
        for _ in range(3):
            after = start if not pings else tab.messages.index(pings[-1]) + 1
            pings.append(await tab.expect("ping", lambda m: m.get("ttl_ms") is not None, after=after, timeout=5))
        deadlines = [p["_t"] + p["ttl_ms"] / 1000 for p in pings]
        assert deadlines[-1] > deadlines[0] and all(p["ttl_ms"] > 0 for p in pings), [p["ttl_ms"] for p in pings]
        since = tab.messages[self.mark:]
        assert not [m for m in since if m["type"] == "released"], since
        for m in since:
            if m["type"] == "state" and m.get("holder") is not None:
                assert m["holder"]["fence"] == self.fence
                assert m["holder"]["user"]["id"] == "holder"
        ping_times = [m["_t"] for m in since if m["type"] == "ping"]
        gaps = [b - a for a, b in itertools.pairwise(ping_times)]
        assert max(gaps, default=0) < HEARTBEAT_S + 3, gaps  # never stalled by the bad client
        # Another user is told it is busy, by this holder with this fence.
        probe = Tab(self.server.ws_url, "probe", tab.workspace, secret=SECRET)
        await probe.connect()
        try:
            for _ in range(3):  # a Redis reply slower than the socket timeout on a busy machine: 'unavailable'
                busy = await probe.request("acquire", timeout=10)
                if busy.get("code") != "unavailable":
                    break
            assert busy["type"] == "busy" and busy["holder"]["user"]["id"] == "holder", busy
            assert probe.state()["holder"]["fence"] == self.fence
        finally:
            await probe.close()
        assert tab.closed_code is None  # still connected


async def new_holder(server: ServerProcess) -> Holder:
    ws = f"doc-{uuid.uuid4().hex[:8]}"
    tab = Tab(server.ws_url, "holder", ws, secret=SECRET)
    await tab.connect()
    got = await tab.request("acquire")
    assert got["type"] == "acquired"
    await tab.expect("ping", lambda m: m.get("ttl_ms") is not None)
    return Holder(tab, got["fence"], server)


@pytest.fixture
async def holder(procs: Servers) -> Any:
    h = await new_holder(procs.strict)
    yield h
    await h.tab.close()


# -- driving a bad client -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # "close" (WebSocket close code), "error" (error message code), "http" (status, no upgrade)
    code: int | str
    reason: str | None = None  # checked when the expectation gives one

    def matches(self, expected: Outcome) -> bool:
        same = (self.kind, self.code) == (expected.kind, expected.code)
        return same and (expected.reason is None or self.reason == expected.reason)


async def connect(url: str, origin: str | None = None, **kw: Any) -> ClientConnection:
    headers = {"Origin": origin} if origin else None
    return await websockets.connect(url, max_size=None, additional_headers=headers, **kw)


async def until_closed(ws: ClientConnection, timeout: float = 10) -> tuple[list[dict[str, Any]], Outcome]:
    """Read until the server closes; returns the messages and the close."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            async for raw in ws:
                messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
    assert ws.close_code is not None, "the server did not send a close frame"
    return messages, Outcome("close", ws.close_code, ws.close_reason)


async def first_frame(url: str, frame: str | bytes) -> Outcome:
    ws = await connect(url)
    await ws.send(frame)
    messages, out = await until_closed(ws)
    assert not [m for m in messages if m["type"] == "welcome"], messages
    return out


async def welcomed(url: str, workspace: str, user: str = "mallory", tab: str | None = None) -> ClientConnection:
    ws = await connect(url)
    await ws.send(hello(workspace, token(user), tab=tab or f"{user}-{uuid.uuid4().hex[:6]}"))
    msg = json.loads(await ws.recv())
    assert msg["type"] == "welcome", msg
    return ws


async def reply_to(ws: ClientConnection, frame: str | bytes, timeout: float = 5) -> dict[str, Any]:
    """Send a frame and return the next error (skipping pings and states)."""
    await ws.send(frame)
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "error":
                return msg  # type: ignore[no-any-return]


async def later(url: str, workspace: str, frame: str | bytes) -> Outcome:
    ws = await welcomed(url, workspace)
    err = await reply_to(ws, frame)
    # The connection stays open and still serves requests.
    await ws.send(json.dumps({"type": "acquire", "id": "after"}))
    async with asyncio.timeout(5):
        while (m := json.loads(await ws.recv())).get("id") != "after":
            pass
    assert m["type"] == "busy", m
    await ws.close()
    return Outcome("error", err["code"], err["message"])


# -- the cases ----------------------------------------------------------------------------------

Run = Callable[[Servers, str], Awaitable[Outcome]]
CASES: list[tuple[str, Run, Outcome]] = []


def case(name: str, expected: Outcome) -> Callable[[Run], Run]:
    def register(fn: Run) -> Run:
        CASES.append((name, fn, expected))
        return fn
    return register


def _first(name: str, frame: str | bytes, code: int, reason: str | None) -> None:
    async def run(p: Servers, ws: str) -> Outcome:
        return await first_frame(p.strict.ws_url, frame.replace("{ws}", ws) if isinstance(frame, str) else frame)
    CASES.append((name, run, Outcome("close", code, reason)))


# First frame: the decoder's own message is the close reason.
_first("first: invalid JSON", "{not json", 4400, decoder_message("{not json"))
_first("first: binary garbage", b"\xff\x00\x01", 4400, decoder_message(b"\xff\x00\x01"))
_first("first: unknown type", '{"type": "hack"}', 4400, decoder_message('{"type": "hack"}'))
_first("first: no type", '{"token": "x"}', 4400, decoder_message('{"token": "x"}'))
_first("first: not an object", "[1, 2]", 4400, decoder_message("[1, 2]"))
_WRONG = '{"type": "hello", "token": "t", "workspace": 123, "tab": "t1"}'
_first("first: wrong field type", _WRONG, 4400, decoder_message(_WRONG))
_first("first: missing field", '{"type": "hello", "token": "t", "tab": "t1"}', 4400,
       decoder_message('{"type": "hello", "token": "t", "tab": "t1"}'))
_first("first: not hello", '{"type": "acquire"}', 4400, "the first message must be hello")
_first("first: invalid workspace id (space)", hello("bad id!"), 4400, None)
_first("first: invalid workspace id (braces)", hello("a}{b"), 4400, None)
_first("first: invalid workspace id (empty)", hello(""), 4400, None)
_first("first: invalid workspace id (201 chars)", hello("w" * 201), 4400, None)
_first("first: invalid tab id", hello("{ws}", tab="tab with spaces"), 4400, None)
_first("first: frame over max_message_bytes", hello("{ws}", client="x" * 17000), 1009, None)
_first("first: workspace id with a .. segment", hello("team-1/../team-2/doc"), 4400, None)
_first("first: workspace id starting with a . segment", hello("./x"), 4400, None)
_first("first: workspace id with a . segment inside", hello("a/./b"), 4400, None)
# About 2 KB nested 1,100 levels deep: deeper than the decoder goes, so invalid JSON like any other.
_NEST = "[" * 1100 + "]" * 1100
_DEEP_HELLO = '{"type": "hello", "workspace": "{ws}", "tab": "t1", "x": ' + _NEST + "}"
_first("first: JSON nested 1,100 levels deep", _DEEP_HELLO, 4400, decoder_message(_DEEP_HELLO))

# Tokens.
_first("token: missing", json.dumps({"type": "hello", "workspace": "{ws}", "tab": "t1"}), 4401, "missing token")
_first("token: null", json.dumps({"type": "hello", "token": None, "workspace": "{ws}", "tab": "t1"}), 4401,
       "missing token")
_first("token: garbage", hello("{ws}", "not-a-jwt"), 4401, None)
_first("token: wrong key", hello("{ws}", jwt.encode({"sub": "m", "exp": int(time.time()) + 600},
                                                    "another-secret-another-secret-xx", algorithm="HS256")), 4401, None)
_first("token: expired beyond leeway", hello("{ws}", token(exp=int(time.time()) - 60)), 4401, "token expired")
_first("token: no exp", hello("{ws}", token(exp=None)), 4401, None)
_first("token: no sub", hello("{ws}", token(sub=None)), 4401, None)
_first("token: alg none", hello("{ws}", jwt.encode({"sub": "m", "exp": int(time.time()) + 600}, None,
                                                   algorithm="none")), 4401, None)
_first("token: HS512 with the right key (algorithm pinned)",
       hello("{ws}", jwt.encode({"sub": "m", "exp": int(time.time()) + 600}, SECRET, algorithm="HS512")), 4401, None)
_first("token: ws claim does not allow the workspace", hello("{ws}", token(ws=["other", "team/*"])), 4403, None)
_NOT_UNICODE = "invalid token: a claim is not valid Unicode (lone surrogate)"
_first("token: lone surrogate in name", hello("{ws}", token(name="Mal\ud800lory")), 4401, _NOT_UNICODE)
_first("token: lone surrogate in sub", hello("{ws}", token(sub="mallory\udfff")), 4401, _NOT_UNICODE)
_first("token: lone surrogate in ws", hello("{ws}", token(ws=["\ud800*"])), 4401, _NOT_UNICODE)
_first("token: claims nested 1,100 levels deep",
       hello("{ws}", signed(f'{{"sub": "m", "exp": {int(time.time()) + 600}, "x": {_NEST}}}')), 4401, None)
_first("token: exp as a string", hello("{ws}", token(exp=str(int(time.time()) + 600))), 4401,
       "invalid token: 'exp' must be a number (seconds since the epoch)")


@case("later: invalid JSON", Outcome("error", "bad_message", decoder_message("{oops")))
async def _later_json(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, "{oops")


@case("later: unknown type", Outcome("error", "bad_message", decoder_message('{"type": "hack"}')))
async def _later_type(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, '{"type": "hack"}')


_DEEP_STATUS = '{"type": "status", "meta": {"a": ' + _NEST + "}}"


@case("later: JSON nested 1,100 levels deep", Outcome("error", "bad_message", "JSON is nested too deeply"))
async def _later_deep(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, _DEEP_STATUS)


_BAD_WAIT = '{"type": "acquire", "wait": "yes"}'


@case("later: wrong field type", Outcome("error", "bad_message", decoder_message(_BAD_WAIT)))
async def _later_field(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, _BAD_WAIT)


_SUPERSCRIPT = '{"type": "pong", "n": "²"}'  # str.isdigit() takes it, int() does not
_ARABIC_INDIC = '{"type": "pong", "n": ٣}'  # int() reads it as 3; JSON does not


@case("later: a number in superscript digits", Outcome("error", "bad_message", decoder_message(_SUPERSCRIPT)))
async def _later_superscript(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, _SUPERSCRIPT)


@case("later: a number in Arabic-Indic digits", Outcome("error", "bad_message", decoder_message(_ARABIC_INDIC)))
async def _later_arabic_indic(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, _ARABIC_INDIC)


@case("later: second hello", Outcome("error", "bad_message", "hello was already received"))
async def _later_hello(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, hello(ws))


@case("later: meta over 1 KiB", Outcome("error", "bad_message", "meta is larger than 1024 bytes"))
async def _later_meta(p: Servers, ws: str) -> Outcome:
    return await later(p.strict.ws_url, ws, json.dumps({"type": "status", "meta": {"x": "y" * 2000}}))


@case("later: takeover with takeover=false", Outcome("error", "takeover_forbidden"))
async def _later_takeover(p: Servers, ws: str) -> Outcome:
    conn = await connect(p.strict.ws_url)
    await conn.send(hello(ws, token(takeover=False)))
    assert json.loads(await conn.recv())["type"] == "welcome"
    err = await reply_to(conn, json.dumps({"type": "takeover", "id": 1}))
    await conn.close()
    return Outcome("error", err["code"])


@case("later: 10 bad frames within a minute", Outcome("close", 4400))
async def _later_ten(p: Servers, ws: str) -> Outcome:
    conn = await welcomed(p.strict.ws_url, ws)
    for i in range(9):
        err = await reply_to(conn, "{bad")
        assert err["code"] == "bad_message", (i, err)
    await conn.send("{bad")
    _, out = await until_closed(conn)
    assert out.reason is not None and out.reason.startswith("too many bad messages"), out
    return out


@case("later: frame over max_message_bytes", Outcome("close", 1009))
async def _later_big(p: Servers, ws: str) -> Outcome:
    conn = await welcomed(p.strict.ws_url, ws)
    await conn.send(json.dumps({"type": "status", "meta": {"x": "y" * 17000}}))
    return (await until_closed(conn))[1]


@case("flood: rate_limited, then 4429", Outcome("close", 4429))
async def _flood(p: Servers, ws: str) -> Outcome:
    conn = await welcomed(p.strict.ws_url, ws)
    for i in range(300):
        await conn.send(json.dumps({"type": "acquire", "id": i}))
    messages, out = await until_closed(conn)
    errors = [m for m in messages if m["type"] == "error"]
    assert errors and {e["code"] for e in errors} == {"rate_limited"}, errors
    assert len([m for m in messages if m["type"] == "busy"]) >= 20  # the burst was served first
    return out


@case("too many tabs for one user", Outcome("close", 4429))
async def _tabs(p: Servers, ws: str) -> Outcome:
    opened = [await welcomed(p.strict.ws_url, ws, user="hoarder") for _ in range(MAX_TABS)]
    try:
        ws_next = await connect(p.strict.ws_url)
        await ws_next.send(hello(ws, token("hoarder"), tab="one-too-many"))
        return (await until_closed(ws_next))[1]
    finally:
        for conn in opened:
            await conn.close()


@case("hello timeout", Outcome("close", 4408))
async def _silent(p: Servers, ws: str) -> Outcome:
    conn = await connect(p.strict.ws_url)
    started = time.monotonic()
    _, out = await until_closed(conn)
    assert time.monotonic() - started >= int(FAST["PRESENCE_HELLO_TIMEOUT_MS"]) / 1000 - 0.1
    return out


async def _refused_upgrade(url: str, origin: str) -> Outcome:
    with pytest.raises(websockets.InvalidStatus) as info:
        await connect(url, origin=origin)
    return Outcome("http", info.value.response.status_code)


@case("origin not allowed (allow-list)", Outcome("http", 403))
async def _origin_listed(p: Servers, ws: str) -> Outcome:
    return await _refused_upgrade(p.listed.ws_url, "https://evil.example")


@case("origin not allowed (same-origin rule, secret set)", Outcome("http", 403))
async def _origin_strict(p: Servers, ws: str) -> Outcome:
    return await _refused_upgrade(p.strict.ws_url, "http://evil.example")


@case("origin: same host name on another port", Outcome("http", 403))
async def _origin_port(p: Servers, ws: str) -> Outcome:
    return await _refused_upgrade(p.strict.ws_url, "http://127.0.0.1:1")


QUEUE_FULL = "send queue full"
BIG_ID = "x" * 15000  # echoed in each reply: fills the kernel's socket buffers (megabytes) quickly


async def _slow_consumer(p: Servers, ws: str, resume: bool) -> Outcome:
    """A tab that stops reading while it keeps asking (replies echo a 15 KB request id) and its
    workspace keeps changing: the kernel's buffers fill, then its bounded queue overflows.
    Runs on ``listed`` (high rate limit), where the test puts the holder too."""
    server = p.listed
    overflows_before = server.log_path.read_text(errors="replace").count(QUEUE_FULL)
    viewers = [Tab(server.ws_url, f"viewer{i}", ws, secret=SECRET) for i in range(3)]
    for v in viewers:
        await v.connect()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    sock.connect(("127.0.0.1", server.port))
    slow = await websockets.connect(server.ws_url, sock=sock, max_size=None, max_queue=4)
    await slow.send(hello(ws, token("slowpoke"), tab="slow-tab"))
    assert json.loads(await slow.recv())["type"] == "welcome"
    slow.transport.pause_reading()
    marks = []
    for v in viewers:
        joined = await v.expect("state", lambda m: any(x["user"]["id"] == "slowpoke" for x in m["viewers"]))
        marks.append(v.messages.index(joined) + 1)

    def overflowed() -> bool:
        return server.log_path.read_text(errors="replace").count(QUEUE_FULL) > overflows_before

    started = time.monotonic()
    n = 0
    while not overflowed():
        assert time.monotonic() - started < 30, "the slow tab's queue never overflowed"
        for _ in range(5):
            await slow.send(json.dumps({"type": "acquire", "id": BIG_ID}))
        await viewers[n % len(viewers)].send({"type": "status", "active": n % 2 == 0})  # broadcasts
        n += 1
        await asyncio.sleep(0.02)
    overflow_at = time.monotonic()

    def slow_left(m: dict[str, Any]) -> bool:
        return all(v["user"]["id"] != "slowpoke" for v in m["viewers"])

    try:
        if resume:
            # The close frame waits behind everything the client did not read: reading again
            # delivers it (before the close watchdog gives up on the connection).
            slow.transport.resume_reading()
            messages, out = await until_closed(slow, timeout=CLOSE_TIMEOUT_S)
            seqs = [m["seq"] for m in messages if m["type"] == "state"]
            assert seqs == sorted(seqs), "messages arrived out of order"
        else:
            # It never reads again: the tab leaves the workspace at once (nobody waits for it), and
            # the server aborts the connection when the closing handshake is overdue.
            for v, mark in zip(viewers, marks, strict=True):
                await v.expect("state", slow_left, timeout=CLOSE_TIMEOUT_S, after=mark)

            def aborted() -> bool:
                return "slowpoke" in "".join(
                    line for line in server.log_path.read_text(errors="replace").splitlines()
                    if "did not complete the close" in line
                )
            while not aborted():
                assert time.monotonic() - overflow_at < CLOSE_TIMEOUT_S + 5, "the connection was never aborted"
                await asyncio.sleep(0.1)
            out = Outcome("close", 1013)  # the close the server sent; this client cannot read it
        # Every other tab kept receiving throughout and saw the slow tab leave.
        for v, mark in zip(viewers, marks, strict=True):
            await v.expect("state", slow_left, timeout=CLOSE_TIMEOUT_S + 5, after=mark)
            assert v.closed_code is None
        return out
    finally:
        slow.transport.abort()
        for v in viewers:
            await v.close()


@case("slow consumer: queue overflow closes 1013 (client reads again)", Outcome("close", 1013))
async def _slow_resume(p: Servers, ws: str) -> Outcome:
    return await _slow_consumer(p, ws, resume=True)


@case("slow consumer: never reads again, connection aborted", Outcome("close", 1013))
async def _slow_gone(p: Servers, ws: str) -> Outcome:
    return await _slow_consumer(p, ws, resume=False)


ON_LISTED = {_slow_resume, _slow_gone}


@pytest.mark.parametrize(("name", "run", "expected"), CASES, ids=[re.sub(r"\W+", "-", c[0]) for c in CASES])
async def test_bad_input(procs: Servers, name: str, run: Run, expected: Outcome) -> None:
    server = procs.listed if run in ON_LISTED else procs.strict
    holder = await new_holder(server)  # in the workspace the bad client uses, on its server
    try:
        got = await run(procs, holder.tab.workspace)
        assert got.matches(expected), f"{name}: got {got}, expected {expected}"
        await holder.assert_untouched()
        wait_until(lambda: server.proc is not None and server.proc.poll() is None, 1, "server alive")
    finally:
        await holder.tab.close()


async def test_valid_variants_of_the_bad_inputs_are_accepted(procs: Servers, holder: Holder) -> None:
    """Controls for the table: the same requests, made valid, are served."""
    ws = holder.tab.workspace
    accepted: list[ClientConnection] = []

    async def ok(url: str, frame: str, origin: str | None = None) -> None:
        conn = await connect(url, origin=origin)
        await conn.send(frame)
        msg = json.loads(await conn.recv())
        assert msg["type"] == "welcome", msg
        accepted.append(conn)

    try:
        await ok(procs.listed.ws_url, hello(ws, token("a")), origin=ALLOWED)
        await ok(procs.strict.ws_url, hello(ws, token("b")), origin=f"http://127.0.0.1:{procs.strict.port}")
        await ok(procs.strict.ws_url, hello(ws, token("c")))  # no Origin: not a browser
        await ok(procs.strict.ws_url, hello(ws, token("d", exp=int(time.time()) - 3)))  # within the leeway
        await ok(procs.strict.ws_url, hello(ws, token("e", ws=[ws[:4] + "*"])))  # prefix claim
        await ok(procs.strict.ws_url, hello(ws, token("f", ws=[ws])))  # exact claim
        await ok(procs.strict.ws_url, hello(ws, token("g"), client="x" * 15000))  # just under the limit
    finally:
        for conn in accepted:
            await conn.close()
    await holder.assert_untouched()


def test_no_bad_input_left_a_traceback_in_the_log(procs: Servers) -> None:
    """Runs after every case above (same module, same two processes): a bad input is answered
    with its code, never with an exception the server did not expect."""
    for server in (procs.strict, procs.listed):
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[max(0, log.index("Traceback") - 1000):][:4000]
