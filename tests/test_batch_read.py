"""The batch lease read with its ids in a body (issue 22, item 10): ``POST /api/v1/leases`` with
``{"workspaces": [...]}`` carries 500 ids of 200 characters, which no URL can, and answers what
the GET form answers; against a real ``presence serve`` and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from conftest import Cluster
from procs import ServerProcess
from test_hardening import assert_no_traceback
from wsclient import Tab, open_tab

API_KEY = "batch-read-api-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def long_ids(n: int = 500) -> list[str]:
    """``n`` distinct ids of 200 characters (the longest allowed), slashes and all."""
    ids = [f"team-{i % 7}/folder/{i:04d}/" for i in range(n)]
    return [(stem + "document-" * 25)[:200] for stem in ids]


@pytest.fixture
async def server(servers: Cluster) -> ServerProcess:
    return await servers.server_async("a", PRESENCE_API_KEY=API_KEY)


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30, headers=AUTH) as client:
        yield client


async def test_500_ids_of_200_characters_are_read_with_a_post(
    server: ServerProcess, api: httpx.AsyncClient, tabs: list[Tab]
) -> None:
    ids = long_ids()
    assert all(len(i) == 200 for i in ids) and len(set(ids)) == 500
    alice = await open_tab(tabs, server, "alice", ws=ids[123])
    await open_tab(tabs, server, "bob", ws=ids[123])
    fence = (await alice.request("acquire"))["fence"]

    # The GET form cannot carry them: its request line (about 100 KB) is refused.
    assert await status_of_get(server, "/api/v1/leases?" + urlencode([("workspace", i) for i in ids])) != 200

    r = await api.post("/api/v1/leases", json={"workspaces": ids})
    assert r.status_code == 200, r.text
    leases = r.json()["leases"]
    assert list(leases) == ids  # every id once, in the order asked
    held = leases[ids[123]]
    assert held["holder"]["user"]["id"] == "alice" and held["fence"] == fence and held["viewers"] == 2
    assert leases[ids[0]] == {"holder": None, "fence": None, "ttl_ms": 0, "viewers": 0}
    assert_no_traceback(server)


async def test_the_post_form_answers_what_the_get_form_answers(
    server: ServerProcess, api: httpx.AsyncClient, tabs: list[Tab]
) -> None:
    alice = await open_tab(tabs, server, "alice", ws="doc-1")
    await alice.request("acquire")
    await open_tab(tabs, server, "bob", ws="doc-2")
    named = ["doc-1", "doc-2", "doc-3", "doc-1"]
    got = await api.get("/api/v1/leases", params=[("workspace", w) for w in named])
    posted = await api.post("/api/v1/leases", json={"workspaces": named})
    assert got.status_code == posted.status_code == 200
    by_get, by_post = got.json()["leases"], posted.json()["leases"]
    for lease in (*by_get.values(), *by_post.values()):
        lease.pop("ttl_ms")  # counts down between the two reads
    assert by_get == by_post and list(by_post) == ["doc-1", "doc-2", "doc-3"]
    # The same limits, the same answers.
    for params, body in (([], []), ([("workspace", f"w{i}") for i in range(501)], [f"w{i}" for i in range(501)]),
                         ([("workspace", "a b")], ["a b"])):
        g = await api.get("/api/v1/leases", params=params)
        p = await api.post("/api/v1/leases", json={"workspaces": body})
        assert g.status_code == p.status_code == 400 and g.json()["error"] == p.json()["error"], (g.text, p.text)
    repeats = await api.post("/api/v1/leases", json={"workspaces": ["doc-1"] * 600})  # 1 workspace, named 600 times
    assert repeats.status_code == 200 and list(repeats.json()["leases"]) == ["doc-1"]


async def status_of_get(server: ServerProcess, target: str) -> int | None:
    """The status of a GET sent as is (httpx refuses to build a URL this long); None when the
    server hangs up without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            line = await reader.readline()
        return int(line.split()[1]) if line else None
    except ConnectionError:
        return None
    finally:
        writer.close()


async def chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"workspaces": ["'
    for _ in range(total // 1024):
        yield b"x" * 1024
    yield b'"]}'


async def test_bad_bodies_are_refused(server: ServerProcess, api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        assert (await anonymous.post("/api/v1/leases", json={"workspaces": ["doc"]})).status_code == 401
    deep = '{"workspaces": ' + "[" * 5000 + "]" * 5000 + "}"
    for body in ("", "{not json", "[]", '{"workspaces": "doc"}', '{"workspaces": [1]}', '{"ids": ["doc"]}',
                 '{"workspaces": ["doc"], "more": 1}', '{"workspaces": ["\\ud800"]}', deep):
        r = await api.post("/api/v1/leases", content=body.encode())
        assert r.status_code == 400, (body[:40], r.status_code, r.text)
        assert r.json()["error"], body[:40]
    huge = await api.post("/api/v1/leases", content=b'{"workspaces": ["' + b"x" * (300 * 1024) + b'"]}')
    assert huge.status_code == 413
    streamed = await api.post("/api/v1/leases", content=chunks(2 << 20))  # chunked: no Content-Length
    assert streamed.status_code == 413
    assert_no_traceback(server)
