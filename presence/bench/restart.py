"""Figure 11: a rolling restart under load. ``presence serve --workers 2`` holds the farm's tabs
(the kernel spreads them over the two workers), a lease per workspace; busy loops pin every core
of the machine; one worker gets SIGTERM. It keeps the leases of its tabs for the restart grace and
closes them with 1012; each tab reconnects to the port as soon as it is closed (the surviving
worker, or the one the supervisor starts in place of the stopped one) and its holder rejoins the
lease. Measured: leases rejoined with their fence (goal: every one), the time from the SIGTERM
until the last tab is back, and the CPU per rejoin of the surviving worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from .harness import HOST, Bench, timings
from .procs import Proc, cpu_seconds
from .scenarios import _hold, _open, farm_tabs


async def restart_under_load(b: Bench, busy_loops: int = 2) -> dict[str, Any]:
    plan = b.plan
    hb, n, per = plan.heartbeat_ms, plan.tabs, plan.tabs_per_workspace
    settings = timings(hb)
    sup = await b.supervisor("restart", workers=2, **settings)
    await _open(b, sup.port, farm_tabs(plan, "rs"))
    await _hold(b, list(range(0, n, per)))
    await asyncio.sleep(hb * 1.5 / 1000)  # every lease renewed once
    busy = [Proc(f"busy-{i}", [sys.executable, "-c", "while True: pass"]) for i in range(busy_loops)]
    b.procs += busy
    for proc in busy:
        proc.start()
    try:
        await asyncio.sleep(1.0)  # the loops have the cores
        victim, survivor = sup.worker_pid(1), sup.worker_pid(2)
        victim_id, survivor_id = await sup.worker_server(1), await sup.worker_server(2)
        cpu0 = cpu_seconds(survivor)
        sigterm = time.perf_counter()
        rejoin = asyncio.create_task(b.farm.call("rejoin", server=victim_id, host=HOST, port=sup.port,
                                                 parallel=plan.parallel, timeout=600))
        os.kill(victim, signal.SIGTERM)
        out = await rejoin
        all_back_s = time.perf_counter() - sigterm
        survivor_cpu = cpu_seconds(survivor) - cpu0
    finally:
        for proc in busy:
            proc.close()
    landed_survivor = out["landed"].get(survivor_id, 0)
    await b.farm.call("close_all")
    sup.close()
    return {
        "tabs": n, "tabs_closed": out["tabs"], "tabs_back": out["back"], "closes": out["closes"],
        "busy_loops": busy_loops, "lease_ttl_ms": int(settings["PRESENCE_LEASE_TTL_MS"]),
        "holders": out["holders"], "rejoined_same_fence": out["rejoined_same_fence"],
        "leases_lost": out["holders"] - out["rejoined_same_fence"], "released": out["released"],
        "sigterm_to_all_back_s": all_back_s, "first_close_to_all_back_s": out["seconds"],
        "landed_on_survivor": landed_survivor, "landed_elsewhere": out["back"] - landed_survivor,
        "survivor_cpu_ms_per_rejoin": survivor_cpu * 1000 / max(landed_survivor, 1),
        "retried": out["retried"], "errors": out["errors"],
    }
