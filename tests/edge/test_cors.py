"""CORS preflights and Date on every answer, on real edge and fleet processes (the origin's own preflight
is in tests/origin/test_delivery.py): a player page from another origin sends OPTIONS before a Range or
CMCD-header request."""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime
from typing import Any

from tests.edge.conftest import SEGMENT, TITLE, Peer, get
from tests.edge.test_edge import start_edge, stop_edge
from tests.origin.conftest import SurgeProcess

PREFLIGHT = {
    "Origin": "https://player.example",
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "range, cmcd-request",
}


def assert_preflight(status: int, headers: Any, body: bytes) -> None:
    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "range, cmcd-request"
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert parsedate_to_datetime(headers["Date"]).year >= 2026


async def test_an_edge_answers_preflights_and_dates_every_answer(peer: Peer) -> None:
    edge = await start_edge(peer)
    try:
        for path in (SEGMENT, f"{TITLE}/360p/index.m3u8", f"{TITLE}/master.m3u8"):
            assert_preflight(*await get(edge.url + path, "OPTIONS", **PREFLIGHT))
        assert peer.counts == {}  # a preflight never goes upstream
        # Miss (aiohttp), hit (the front), 304 (the front), error (aiohttp): each has a Date.
        answers = [
            await get(edge.url + SEGMENT),
            await get(edge.url + SEGMENT),
            await get(edge.url + SEGMENT, "HEAD"),
            await get(edge.url + "/titles/no-such-title/360p/seg_00000.m4s"),
            await get(edge.url + "/nothing-here"),
        ]
        etag = answers[0][1]["ETag"]
        answers.append(await get(edge.url + SEGMENT, **{"If-None-Match": etag}))
        assert [a[0] for a in answers] == [200, 200, 200, 404, 404, 304]
        for _, headers, _ in answers:
            assert parsedate_to_datetime(headers["Date"]).year >= 2026
    finally:
        await stop_edge(edge)
    off = await start_edge(peer, "--cors-origin", "")
    try:
        status, headers, _ = await get(off.url + SEGMENT, "OPTIONS", **PREFLIGHT)
        assert status == 204 and "Access-Control-Allow-Origin" not in headers
    finally:
        await stop_edge(off)


async def test_the_fleet_answers_preflights(peer: Peer) -> None:
    fleet = await asyncio.to_thread(SurgeProcess("fleet", "--origin", peer.url, "--min-edges", "1").start)
    try:
        for path in (
            "/titles/show-abc123/master.m3u8",
            "/t/show-abc123/master.m3u8",
            "/steer/show-abc123.json",
        ):
            assert_preflight(*await get(fleet.url + path, "OPTIONS", **PREFLIGHT))
        status, headers, _ = await get(fleet.url + "/fleet")
        assert status == 200 and parsedate_to_datetime(headers["Date"]).year >= 2026
    finally:
        assert await asyncio.to_thread(fleet.stop) == 0
