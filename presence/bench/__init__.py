"""``presence bench``: measures the server against baselines measured in the same run, on loopback.

It starts its own redis-server (or uses ``--redis-url``, which must be on this machine), its own
``presence serve`` processes, a bare server on the same uvicorn/Starlette stack and a tab farm,
and measures:

1. acquire round trip over the WebSocket vs the floor (WS echo + a minimal script from redis-py);
2. idle cost of N tabs vs a bare server that only pings them (CPU, memory, Redis round trips);
3. renewing many held leases: one batched tick vs one ``Lock.extend`` per lease;
4. takeover notice to a tab on another process vs a raw PUBLISH-to-subscriber hop;
5. time until a lease is free after its holder's process is SIGKILLed, vs the lease TTL;
6. a reconnect storm after a server restart vs as many bare handshakes; no lease may be lost;
7. a big room: CPU per join and bytes per tab as N users join one workspace, big N vs small N;
8. a status storm: CPU per ``status`` message in a big workspace vs a small one;
9. the acquire round trip with ``PRESENCE_REDIS_WAIT_REPLICAS=1`` (a replica of its own) vs without.
10. list views: watchers of many workspaces each, on two processes, while leases change steadily:
    delivery latency p50/p99 and server CPU vs the same watchers idle.
11. a rolling restart under load: ``serve --workers 2`` with the storm's tabs and leases, busy
    loops on the cores, SIGTERM to one worker: leases rejoined with their fence, time until the
    last tab is back, CPU per rejoin (figure 6 is the same storm on a quiet machine).
12. presence meta fan-out: tabs in one workspace on two processes (in a farm process of their own),
    some sending metas at 60 Hz: server CPU per meta, each tab's update rate, send to the last tab
    p50/p99, Redis commands per meta, every tab ending with exactly the last metas; vs the same
    tabs idle.
13. named locks: Redis round trips per renewal tick with 100 locks held in one workspace vs 1, every
    lock kept with its fence; a named lock's acquire round trip vs the workspace's lease.

With ``--peer hocuspocus`` it also measures a peer server on one workload, side by side: N clients
joining one workspace, a fan-out of presence changes, an idle window (see presence/bench/peer.py).
The peer is installed from npm into a cache directory (``--peer-cache``); without node and npm the
comparison is skipped with a message. ``--only peer`` runs the comparison alone.

Everything is bounded (``--timeout``) and every process it started is ended when it returns.
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any
from urllib.parse import urlparse

# "idle" also measures the storm
FIGURES = ("acquire", "takeover", "renewal", "idle", "restart", "free", "room", "status", "wait", "watch", "metas",
           "locks")
PEERS = ("hocuspocus",)  # --peer: the comparison's figure is "peer"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure this server against same-run baselines (loopback only)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small numbers, about a minute (the test suite's mode)")
    p.add_argument("--tabs", type=int, help="idle tabs and reconnect storm size (default 5000; quick 200)")
    p.add_argument("--heartbeat-ms", type=int, help="heartbeat of the idle server (default 5000; quick 500)")
    p.add_argument("--redis-url", help="use this Redis (on this machine) instead of starting one")
    p.add_argument("--only", help=f"comma list of figures to run: {','.join(FIGURES)},peer "
                                  "(peer: the --peer comparison alone)")
    p.add_argument("--json", metavar="PATH", help="write every figure and the machine's description as JSON")
    p.add_argument("--chart", metavar="PATH", help="draw the ratios as a PNG (needs presence[chart])")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (default 900; quick 300)")
    p.add_argument("--peer", choices=PEERS, help="also measure this peer server on the same workload, side by side")
    p.add_argument("--peer-clients", type=_sizes, metavar="N,N",
                   help="clients of the peer comparison (default 400,1000; quick 100,200); "
                        "the fan-out and idle window at the first")
    p.add_argument("--peer-cache", metavar="DIR",
                   help="where the peer is installed from npm (default ~/.cache/presence-bench/PEER)")
    p.set_defaults(func=main)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of client counts of 2 or more")
    return sizes


def loopback_only(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return
    host = parsed.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"presence bench: {url!r} is not on this machine; the bench targets loopback only")


def main(args: argparse.Namespace) -> int:
    import asyncio

    from .run import output, run

    if args.redis_url:
        loopback_only(args.redis_url)
    only = set(args.only.split(",")) if args.only else set(FIGURES)
    unknown = only - {*FIGURES, "peer"}
    if unknown:
        raise SystemExit(f"presence bench: unknown figures {sorted(unknown)}; choose from {','.join(FIGURES)},peer")
    if "peer" in only and not args.peer:
        raise SystemExit(f"presence bench: --only peer needs --peer ({','.join(PEERS)})")
    try:
        import uvloop  # uvicorn[standard] brings it; the client side of the bench runs on it too
    except ImportError:
        result = asyncio.run(run(args, only))
    else:
        result = uvloop.run(run(args, only))
    output(result, args)
    return 0
