"""`presence bench --quick` runs and reports every figure (no timing assertions: the machine is
shared; docs/benchmarks.md has the real numbers)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from paths import ROOT

from presence.bench import hocuspocus
from presence.bench.harness import Plan
from presence.bench.metafarm import first_shown
from presence.bench.peer import PeerPlan, compare, last_seen
from presence.bench.run import output


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
        "metas", "locks",
    }
    assert {r["figure"] for r in report["rows"]} == {
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13",
    }
    watch = report["figures"]["watch"]
    assert watch["deliveries"] == watch["expected"] > 0  # every lease change reached every watcher
    for row in report["rows"]:
        assert row["ours"] and row["baseline"], row
    figures = report["figures"]
    acquire, samples = figures["acquire"], report["plan"]["samples"]
    # Every kind of sample taken as often: ours, and the floor's parts (the echo, the minimal
    # script), and our own acquire script from redis-py as context.
    assert [acquire[k]["n"] for k in ("ours", "echo", "lua", "script", "floor", "script_floor")] == [samples] * 6
    assert acquire["floor"]["p50"] > acquire["echo"]["p50"]
    assert acquire["ratio_p50"] == acquire["ours"]["p50"] / acquire["floor"]["p50"]
    assert [r["name"] for r in report["rows"] if r["figure"] == "1"] == [
        "acquire round trip p50", "acquire round trip p99",
        "acquire round trip vs echo + our script, p50", "acquire round trip vs echo + our script, p99",
    ]
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


def _bench_only(figures: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "presence", "bench", "--quick", "--only", figures, "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    assert set(report["figures"]) == set(figures.split(","))
    return report, done.stdout


def test_meta_fanout_reports_its_figures_and_every_tab_ends_with_the_last_metas(tmp_path: Path) -> None:
    report, stdout = _bench_only("metas", tmp_path)
    f = report["figures"]["metas"]
    plan = f["plan"]
    assert f["sent"] == plan["senders"] * int(plan["hz"] * plan["seconds"])
    # Correctness, not timing: every tab (and a new tab's snapshot on each server) shows exactly each
    # sender's last meta, every meta reached every other tab (itself or a later one), no error.
    assert f["correct"] and f["missed"] == 0 and f["sender_errors"] == 0
    assert f["final_exact"] == f["final_pairs"] == plan["tabs"] * plan["senders"]
    assert f["new_tab_exact"] == f["new_tab_pairs"] == 2 * plan["senders"]
    assert f["latency"]["n"] == f["sent"] and f["latency"]["p99"] > 0
    assert f["cpu_us_per_meta"] > 0 and f["redis_commands_per_meta"] > 0 and f["evalsha_per_meta"] > 0
    assert f["update_rate"]["max"] > 0 and f["idle"]["seconds"] > 0
    rows = [r for r in report["rows"] if r["figure"] == "12"]
    assert len(rows) == 6 and all(r["ours"] and r["baseline"] for r in rows)
    assert [r["met"] for r in rows if r["name"].endswith("final metas exact")] == [True]
    assert stdout.count("meta fan-out") == len(rows)


def test_named_locks_report_round_trips_per_tick_and_keep_every_lock(tmp_path: Path) -> None:
    report, stdout = _bench_only("locks", tmp_path)
    f = report["figures"]["locks"]
    n = f["plan"]["locks"]
    # Correctness: every lock granted is still held with its fence after the renewal ticks.
    assert f["kept"] == {"held": n, "granted": n, "same_fence": n}
    for window in (f["one"], f["many"]):  # each tick renewed its locks in one batch
        assert window["ticks"] >= 1 and window["batches_per_tick"] > 0 and window["round_trips_per_tick"] > 0
        assert window["scripts_per_tick"] > 0
    # Redis does more work per tick for 100 locks (the script touches each), in as many calls.
    assert f["many"]["redis_commands_per_tick"] > f["one"]["redis_commands_per_tick"]
    for side in ("lock", "lease"):
        assert f[side]["n"] == f["plan"]["samples"] and f[side]["p50"] > 0
    rows = [r for r in report["rows"] if r["figure"] == "13"]
    assert len(rows) == 4 and all(r["ours"] and r["baseline"] for r in rows)
    assert rows[1]["met"] is True  # the locks kept
    assert sum(1 for line in stdout.splitlines() if line.startswith("13 ")) == len(rows)


def test_a_meta_counts_as_shown_when_its_cursor_or_a_later_one_is() -> None:
    # Cursor 2 was superseded within the meta interval: cursor 3's arrival shows it too.
    moves = [(1.0, 1), (1.2, 3), (1.3, 4)]
    assert first_shown(moves, 5) == [1.0, 1.2, 1.2, 1.3, None]  # cursor 5 never arrived
    assert first_shown([(1.0, 2), (1.1, 1), (1.5, 3)], 3) == [1.0, 1.0, 1.5]  # never back in time


# -- the peer comparison (presence bench --peer hocuspocus) ------------------------------------

PEER_ROWS = {
    "time until every client sees all N", "server CPU per join", "Redis CPU per join", "server memory per client",
    "payload bytes per client", "fan-out: last client saw a change, p50", "fan-out: last client saw a change, p99",
    "fan-out: server CPU per change", "idle: server CPU", "idle: bytes per client per s",
}


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm")
def test_peer_comparison_measures_both_servers_at_every_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "presence", "bench", "--quick", "--peer", "hocuspocus", "--only", "peer",
           "--peer-clients", "10,20", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(out.read_text())
    peer = report["figures"]["peer"]
    assert "skipped" not in peer, peer["skipped"]
    assert set(report["figures"]) == {"peer"}  # --only peer: nothing else ran
    assert peer["versions"]["@hocuspocus/server"].startswith("4.") and peer["versions"]["node"].startswith("v")
    assert [s["clients"] for s in peer["sizes"]] == [10, 20]
    for size in peer["sizes"]:
        for side in ("presence", "hocuspocus"):
            joined = size[side]
            # The clients' CPU is context, read in clock ticks (10 ms): a small run may read 0.
            assert joined["all_seen_s"] > 0 and joined["clients_cpu_ms_per_join"] >= 0, (side, joined)
            # every client heard of every other one: some bytes per other client at least
            assert joined["bytes_per_client"] > 10 * size["clients"], (side, joined)
    changes = peer["plan"]["changes"]
    for side in ("presence", "hocuspocus"):  # every change reached every client (a correctness check)
        fanout = peer["fanout"][side]
        assert fanout["missed"] == 0 and fanout["last_seen"]["n"] == changes, (side, fanout)
        assert peer["idle"][side]["seconds"] > 0

    rows = {r["name"]: r for r in report["peer_rows"]}
    assert set(rows) == PEER_ROWS
    for row in rows.values():
        for cell in row["cells"]:
            assert math.isfinite(cell["presence"]) and math.isfinite(cell["peer"]), row
            assert " / " in cell["text"], row
    assert [c["clients"] for c in rows["server CPU per join"]["cells"]] == [10, 20]
    assert [c["clients"] for c in rows["fan-out: server CPU per change"]["cells"]] == [10]
    # The table on stdout: a line per row, with the header naming both servers and both sizes.
    assert re.search(r"^figure \(presence / hocuspocus\)\s+N = 10\s+N = 20$", done.stdout, re.M), done.stdout
    for name in PEER_ROWS:
        assert re.search(rf"^{re.escape(name)}\s+\S+ / \S+ ", done.stdout, re.M), name


def test_last_seen_is_when_the_last_client_first_showed_each_change() -> None:
    # Change 0 sets active False at 1.0, change 1 sets True at 2.0 (seconds).
    sent = [1.0, 2.0]
    seen = [
        [(1.01, False), (2.03, True)],
        [(0.5, False), (1.05, False), (2.02, True)],  # a value from before the change does not count
        [(1.02, False), (1.5, True), (2.01, True)],  # nor a value other than the change's
    ]
    latencies, missed = last_seen(sent, seen)
    assert missed == 0
    assert latencies == pytest.approx([0.05, 0.03])
    # A client that never showed the second change: it is missed, the first still measured.
    latencies, missed = last_seen(sent, [[(1.01, False)], [(1.02, False), (2.01, True)]])
    assert (latencies, missed) == (pytest.approx([0.02]), 1)


async def test_without_node_the_peer_comparison_is_skipped_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hocuspocus.shutil, "which", lambda name: None if name == "node" else f"/usr/bin/{name}")
    said: list[str] = []
    fig = await compare("hocuspocus", PeerPlan.quick(), tmp_path / "cache", Plan.quick(), said.append)
    assert fig == {"peer": "hocuspocus", "skipped": "node not found on PATH (install Node.js 20 or later with npm)"}
    assert said == [f"peer comparison skipped: {fig['skipped']}"]
    assert not (tmp_path / "cache").exists()  # nothing installed, nothing started


def test_a_skipped_comparison_prints_why_and_writes_it_to_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    result = {"mode": "quick", "seconds": 1.0, "load_average": {"before": 0.1, "after": 0.2},
              "figures": {"peer": {"peer": "hocuspocus", "skipped": "npm not found on PATH"}}}
    output(result, argparse.Namespace(json=str(out), chart=None))
    assert "peer comparison skipped: npm not found on PATH" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["figures"]["peer"]["skipped"] == "npm not found on PATH" and "peer_rows" not in written
