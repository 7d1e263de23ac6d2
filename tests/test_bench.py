"""`presence bench --quick` runs and reports every figure (no timing assertions: the machine is
shared; BENCHMARKS.md has the real numbers)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from procs import ROOT


def test_quick_bench_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "presence", "bench", "--quick", "--json", str(out)]
    if importlib.util.find_spec("matplotlib") is not None:
        cmd += ["--chart", str(tmp_path / "bench.png")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(out.read_text())
    assert set(report["figures"]) == {
        "acquire", "idle", "renewal", "takeover", "free", "storm", "room", "status", "wait", "watch", "restart",
    }
    assert {r["figure"] for r in report["rows"]} == {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}
    watch = report["figures"]["watch"]
    assert watch["deliveries"] == watch["expected"] > 0  # every lease change reached every watcher
    for row in report["rows"]:
        assert row["ours"] and row["baseline"], row
    figures = report["figures"]
    assert figures["acquire"]["ours"]["n"] == report["plan"]["samples"]
    assert figures["storm"]["ours_connected"] == report["plan"]["tabs"]
    assert figures["storm"]["leases_lost"] == 0  # a correctness check, not a timing one
    restart = figures["restart"]  # the same under load, over two workers, one stopped
    assert restart["tabs_back"] == restart["tabs_closed"] > 0 and restart["closes"] == {"1012": restart["tabs_closed"]}
    assert restart["holders"] > 0 and restart["leases_lost"] == 0
    for room in figures["room"]["rooms"]:  # every tab saw every join by updates, never a whole state
        assert room["messages"]["welcome"] == room["tabs"] and "state" not in room["messages"], room
    assert report["machine"]["redis"] != "?"
    # The table on stdout has a line per row.
    assert done.stdout.count("\n") >= len(report["rows"]) + 2
    if "--chart" in cmd:
        assert (tmp_path / "bench.png").stat().st_size > 1000
