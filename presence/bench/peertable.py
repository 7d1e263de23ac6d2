"""The peer comparison's table: one row per figure, one column per N, each cell
``presence / peer (ratio)`` with the ratio presence / peer (below 1: presence needs less)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .report import grid

Pick = Callable[[dict[str, Any]], float]  # one side's figure, from its dict


@dataclass(frozen=True, slots=True)
class Cell:
    clients: int
    presence: float
    peer: float
    ratio: float | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "presence": self.presence, "peer": self.peer, "ratio": self.ratio,
                "text": self.text}


@dataclass(frozen=True, slots=True)
class PeerRow:
    name: str
    cells: tuple[Cell, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cells": [c.as_dict() for c in self.cells]}


# (name, unit, pick) per phase; the unit follows the pair of numbers
JOIN: tuple[tuple[str, str, Pick], ...] = (
    ("time until every client sees all N", "s", lambda f: f["all_seen_s"]),
    ("server CPU per join", "ms", lambda f: f["cpu_ms_per_join"]),
    ("Redis CPU per join", "ms", lambda f: f["redis_cpu_ms_per_join"]),
    ("server memory per client", "KiB", lambda f: f["kib_per_client"]),
    ("payload bytes per client", "KiB", lambda f: f["bytes_per_client"] / 1024),
)
FANOUT: tuple[tuple[str, str, Pick], ...] = (
    # no percentile when every change was missed (see the row of missed changes)
    ("fan-out: last client saw a change, p50", "ms", lambda f: f["last_seen"].get("p50", math.nan)),
    ("fan-out: last client saw a change, p99", "ms", lambda f: f["last_seen"].get("p99", math.nan)),
    ("fan-out: server CPU per change", "ms", lambda f: f["cpu_ms_per_change"]),
)
IDLE: tuple[tuple[str, str, Pick], ...] = (
    ("idle: server CPU", "% of a core", lambda f: f["cpu_pct"]),
    ("idle: bytes per client per s", "B", lambda f: f["bytes_per_client_per_s"]),
)


def _num(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _cell(n: int, ours: dict[str, Any], theirs: dict[str, Any], unit: str, pick: Pick) -> Cell:
    a, b = pick(ours), pick(theirs)
    ratio = a / b if b and not math.isnan(a + b) else None
    text = f"{_num(a)} / {_num(b)} {unit}" + (f" ({ratio:.2f}x)" if ratio is not None else "")
    return Cell(n, a, b, ratio, text)


def rows(fig: dict[str, Any]) -> list[PeerRow]:
    """The rows of a comparison that ran (``fig`` without ``skipped``)."""
    peer = fig["peer"]
    out = [PeerRow(name, tuple(_cell(s["clients"], s["presence"], s[peer], unit, pick) for s in fig["sizes"]))
           for name, unit, pick in JOIN]
    for phase, defs in (("fanout", FANOUT), ("idle", IDLE)):
        if (f := fig.get(phase)) is not None:
            out += [PeerRow(name, (_cell(f["clients"], f["presence"], f[peer], unit, pick),))
                    for name, unit, pick in defs]
    if (f := fig.get("fanout")) is not None and (f["presence"]["missed"] or f[peer]["missed"]):
        n = f["clients"]
        out.append(PeerRow("fan-out: changes some client never showed", (Cell(
            n, f["presence"]["missed"], f[peer]["missed"], None,
            f"{f['presence']['missed']} / {f[peer]['missed']} of {f['presence']['changes']}"),)))
    return out


def table(fig: dict[str, Any], rs: list[PeerRow]) -> str:
    sizes = [s["clients"] for s in fig["sizes"]]
    head = (f"figure (presence / {fig['peer']})", *(f"N = {n}" for n in sizes))
    body = [(r.name, *(next((c.text for c in r.cells if c.clients == n), "") for n in sizes)) for r in rs]
    return grid(head, body)
