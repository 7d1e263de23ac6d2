"""An identity provider that is slow, huge or down, against real ``presence serve`` processes:
hellos never wait on a fetch, and the keys in hand keep verifying."""

from __future__ import annotations

import asyncio
import time

import pytest
from keysets import KeySetServer, Signer, eventually_welcome, hello_outcome, signed, weak_rsa_jwk
from procs import ServerProcess
from servers import Cluster, assert_no_traceback
from waiting import eventually
from wsclient import Tab


async def timed_outcome(server: ServerProcess, token: str, tabs: list[Tab]) -> tuple[str | int | None, float]:
    began = time.monotonic()
    outcome = await hello_outcome(server, token, tabs)
    return outcome, time.monotonic() - began


async def test_hellos_never_wait_on_a_dripping_provider(
    servers: Cluster, keyset: KeySetServer, tabs: list[Tab]
) -> None:
    """The key set expires after a second and its provider then drips its answer a byte at a time:
    every hello is still answered at once (welcome with a key in hand, 4401 without), and the
    server gives the fetch up at its deadline and hangs up."""
    signer, rotated = Signer("RS256"), Signer("ES256")
    keyset.keys = [signer.jwk()]
    server = await servers.server_async("idp", PRESENCE_JWKS_URL=keyset.url, PRESENCE_JWKS_CACHE_S="1",
                                        PRESENCE_JWKS_REFRESH_MS="200")
    assert keyset.requests == 1
    keyset.keys, keyset.mode, keyset.drip_s = [signer.jwk(), rotated.jwk()], "drip", 0.5
    for round in range(4):
        outcome, took = await timed_outcome(server, signer.token("alice"), tabs)
        assert outcome == "welcome" and took < 1.5, (outcome, took)
        outcome, took = await timed_outcome(server, rotated.token("bob"), tabs)  # not in hand: refused at once
        assert outcome == 4401 and took < 1.5, (outcome, took)
        if round == 1:  # the rest while the fetch is dripping in
            await eventually(lambda: keyset.requests == 2, what="the background refresh of the expired set")
    # The fetch's deadline (10 s) passes: the server hangs up and says so.
    assert await asyncio.to_thread(keyset.dropped.wait, 20)
    await eventually(lambda: "no complete answer within 10 s" in server.log(), timeout=5, what="the warning")
    keyset.mode = "serve"  # the provider recovers: the rotated key arrives with the next fetch
    await eventually_welcome(server, rotated.token("bob"), tabs, timeout=10)
    assert_no_traceback(server)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test signs with a weak key
async def test_a_huge_weak_or_absent_key_set_leaves_the_keys_in_hand(
    servers: Cluster, keyset: KeySetServer, tabs: list[Tab]
) -> None:
    signer, rotated = Signer("RS256"), Signer("ES256")
    weak, weak_jwk = weak_rsa_jwk("weak")
    keyset.keys = [signer.jwk()]
    server = await servers.server_async("idp", PRESENCE_JWKS_URL=keyset.url, PRESENCE_JWKS_REFRESH_MS="0")

    # A huge answer (valid JSON, with the rotated key in it): refused unread past the cap.
    keyset.keys, keyset.mode, keyset.declare, keyset.huge_bytes = [signer.jwk(), rotated.jwk()], "huge", False, 8 << 20
    assert await hello_outcome(server, rotated.token("bob"), tabs) == 4401  # asks for a fetch
    await eventually(lambda: "larger than 1048576 bytes" in server.log(), what="the refused key set")
    assert await hello_outcome(server, rotated.token("bob"), tabs) == 4401
    assert await hello_outcome(server, signer.token("alice"), tabs) == "welcome"

    # A 1024-bit RSA key: skipped, the other keys of the set are taken.
    keyset.keys, keyset.mode = [signer.jwk(), rotated.jwk(), weak_jwk], "serve"
    await eventually_welcome(server, rotated.token("bob"), tabs)
    assert "1024 bits is too weak" in server.log()
    assert await hello_outcome(server, signed(weak, "weak", "RS256"), tabs) == 4401

    # The provider goes down: the keys in hand keep verifying, at once.
    keyset.close()
    requests, failures = keyset.requests, server.log().count("could not fetch the key set")
    assert await hello_outcome(server, Signer("ES256").token("carol"), tabs) == 4401  # asks for a fetch that fails
    await eventually(lambda: server.log().count("could not fetch the key set") > failures, what="the failed fetch")
    assert keyset.requests == requests
    for token in (signer.token("alice"), rotated.token("bob")):
        outcome, took = await timed_outcome(server, token, tabs)
        assert outcome == "welcome" and took < 1.5
    assert_no_traceback(server)
