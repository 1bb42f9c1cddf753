"""The Python work of one edge hit: ``Edge.fast_answer`` for a stored 1.5 MB segment, in a loop (no
sockets: what the kernel's copy costs is measured by run.py). Prints microseconds per hit.

    .venv/bin/python bench/edge/hit_cost.py [--hits 100000]
"""

from __future__ import annotations

import argparse
import time

from edge.config import EdgeConfig
from edge.policy import freshness
from edge.proxy import Edge
from edge.store import CachedObject
from service.front import SimpleRequest

KEY = "/titles/bench-000001/v720/seg_00001.m4s"
HEADERS = {
    "Content-Type": "video/iso.segment",
    "Cache-Control": "public, max-age=31536000, immutable",
    "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT",
    "ETag": '"bench"',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=100_000)
    hits = parser.parse_args().hits
    edge = Edge(EdgeConfig(upstreams=("http://127.0.0.1:9",)))
    now = time.time()
    lower = {name.lower(): value for name, value in HEADERS.items()}
    edge.cache.memory.put(CachedObject(KEY, 200, HEADERS, b"x" * 1_500_000, freshness(lower, now, now)))
    request = SimpleRequest("GET", KEY, "", {b"host": b"bench", b"user-agent": b"wrk"}, "127.0.0.1")
    if edge.fast_answer(request) is None:
        raise SystemExit("the stored segment was not answered from memory")
    started = time.perf_counter()
    for _ in range(hits):
        edge.fast_answer(request)
    print(f"{(time.perf_counter() - started) / hits * 1e6:.2f} us per hit ({hits} hits)")


if __name__ == "__main__":
    main()
