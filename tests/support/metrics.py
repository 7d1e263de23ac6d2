"""A server's /metrics, parsed with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from procs import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: ServerProcess) -> Samples:
    async with httpx.AsyncClient() as client:
        r = await client.get(server.http_url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
