"""An edge gives the same answers up front (the front's fast path) and through aiohttp's handlers.

One table of requests goes, in the same order, to two real edges in front of one upstream: one as
shipped, one with ``SURGE_NO_FAST_PATH=1``; status, headers and body must agree (tests/two_paths.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from media.signing import Grant, SigningKeys, make_token, signed_path
from service.serve import NO_FAST_PATH_ENV
from tests.edge.conftest import SEGMENT, TITLE, EdgeProcess, Peer
from tests.edge.test_edge import stop_edge
from tests.two_paths import ETAG, Row, exchange, send_both

PLAYLIST = f"{TITLE}/360p/index.m3u8"
STALE = f"{TITLE}/360p/seg_00004.m4s"
KEY = "signing-key-0123456789abcdef"
DATE = "Wed, 25 Nov 2026 10:00:00 GMT"  # the peer's Last-Modified
EARLIER, LATER = "Tue, 24 Nov 2026 10:00:00 GMT", "Thu, 26 Nov 2026 10:00:00 GMT"


def edge_rows() -> list[Row]:
    segment, playlist = SEGMENT, PLAYLIST
    rows: list[Row] = [
        ("GET", segment, {}),
        ("HEAD", segment, {}),
        ("GET", playlist, {}),
        ("HEAD", playlist, {}),
    ]
    rows += [
        ("GET", segment, {"If-None-Match": ETAG}),
        ("HEAD", segment, {"If-None-Match": ETAG}),
        ("GET", segment, {"If-None-Match": '"other"'}),
        ("GET", segment, {"If-None-Match": f'"other", {ETAG}'}),
        ("GET", segment, {"If-Modified-Since": DATE}),
        ("GET", segment, {"If-Modified-Since": EARLIER}),
        ("GET", segment, {"If-None-Match": '"other"', "If-Modified-Since": LATER}),
        ("GET", segment, {"Range": "bytes=0-99"}),
        ("HEAD", segment, {"Range": "bytes=0-99"}),
        ("GET", segment, {"Range": "bytes=-100"}),
        ("GET", segment, {"Range": "bytes=299990-"}),
        ("GET", segment, {"Range": "bytes=999999-"}),  # unsatisfiable
        ("GET", segment, {"Range": "bytes=-0"}),  # unsatisfiable
        ("GET", segment, {"Range": "bytes=9-0"}),  # invalid: ignored
        ("GET", segment, {"Range": "bytes=0-1,5-6"}),  # several: ignored
        ("GET", segment, {"Range": "lines=1-2"}),
        ("GET", segment, {"Range": "bytes=0-9", "If-Range": ETAG}),
        ("GET", segment, {"Range": "bytes=0-9", "If-Range": '"other"'}),
        ("GET", segment, {"Range": "bytes=0-9", "If-Range": DATE}),
        ("GET", segment, {"Range": "bytes=0-9", "If-None-Match": ETAG}),
        ("GET", segment + "?CMCD=br%3D800%2Cnor%3D%22seg_00002.m4s%22", {}),
        ("GET", segment, {"CMCD-Request": 'nor="seg_00003.m4s"'}),
        ("GET", playlist, {"Accept-Encoding": "gzip, deflate"}),
        ("GET", f"{TITLE}/360p/seg_09999.m4s", {}),  # the upstream has no such object: 404, passed on
        ("GET", "/titles/no-such-title/360p/seg_00000.m4s", {}),
        ("GET", "/titles/BAD!/360p/seg_00000.m4s", {}),  # not a title id: 400 or 404
        ("GET", f"{TITLE}/360p/..%2F..%2Fadmin.token", {}),
        ("GET", "/titles/", {}),
        ("GET", f"/t/not-a-token{SEGMENT}", {}),  # signing off: the token is dropped
        ("GET", STALE, {}),  # stale-while-revalidate: answered STALE, refreshed behind
    ]
    return rows


async def start_pair(peer: Peer, *args: str) -> tuple[EdgeProcess, EdgeProcess]:
    """Two edges in front of ``peer``: as shipped, and with every request through aiohttp."""
    fast = await asyncio.to_thread(EdgeProcess("--upstream", peer.url, "--prefetch", "0", *args).start)
    os.environ[NO_FAST_PATH_ENV] = "1"
    try:
        slow = await asyncio.to_thread(EdgeProcess("--upstream", peer.url, "--prefetch", "0", *args).start)
    except BaseException:
        await stop_edge(fast)
        raise
    finally:
        del os.environ[NO_FAST_PATH_ENV]
    return fast, slow


@pytest.fixture
async def edges(peer: Peer) -> AsyncIterator[tuple[EdgeProcess, EdgeProcess]]:
    peer.cache_controls[STALE] = "public, max-age=1, stale-while-revalidate=600"
    fast, slow = await start_pair(peer)
    try:
        yield fast, slow
    finally:
        await stop_edge(fast)
        await stop_edge(slow)


async def test_an_edge_answers_alike_up_front_and_through_aiohttp(
    edges: tuple[EdgeProcess, EdgeProcess],
) -> None:
    fast, slow = edges
    for edge in edges:
        for path in (SEGMENT, PLAYLIST, STALE):
            assert (await exchange(edge.url, "GET", path, {})).headers["x-cache"] == "MISS"
    etag = (await exchange(fast.url, "GET", SEGMENT, {})).headers["etag"]
    await asyncio.sleep(1.1)  # STALE is past its max-age now
    pairs = await send_both(fast.url, slow.url, edge_rows(), etag)
    statuses = [fast.status for fast, _ in pairs]
    assert {200, 206, 304, 400, 404, 416} <= set(statuses)
    assert pairs[-1][0].headers["x-cache"] == "STALE"
    # The shipped edge answered the cached rows up front (no aiohttp Server token), the other did not.
    up_front = [fast for fast, _ in pairs if fast.headers.get("x-cache") in ("HIT", "STALE")]
    assert len(up_front) >= 20 and all("server" not in r.headers for r in up_front)
    assert all("server" in slow.headers for _, slow in pairs)


async def test_signed_paths_are_checked_alike_on_both_paths(peer: Peer) -> None:
    keys = SigningKeys((KEY.encode(),))
    far = int(time.time()) + 3600
    title = Grant(f"{TITLE}/", far)

    def signed(grant: Grant, path: str = SEGMENT) -> str:
        return signed_path(make_token(keys, grant), path)

    fast, slow = await start_pair(peer, "--signing-key", KEY)
    try:
        for edge in (fast, slow):
            assert (await exchange(edge.url, "GET", signed(title), {})).status == 200
        rows: list[Row] = [
            ("GET", signed(title), {}),
            ("GET", signed(title), {"Range": "bytes=0-9"}),
            ("GET", signed(Grant(title.prefix, far, "127.0.0.1")), {}),  # bound to this client
            ("GET", signed(Grant(title.prefix, far, "198.51.100.7")), {}),  # another client's
            ("GET", signed(Grant(title.prefix, 1)), {}),  # expired
            ("GET", signed(Grant("/titles/other-title/", far)), {}),
            ("GET", signed_path(make_token(SigningKeys((b"x" * 16,)), title), SEGMENT), {}),
            ("GET", SEGMENT, {}),  # unsigned
        ]
        pairs = await send_both(fast.url, slow.url, rows, "")
        assert [fast.status for fast, _ in pairs] == [200, 206, 200, 403, 403, 403, 403, 403]
        assert all("server" not in fast.headers for fast, _ in pairs[:3])
    finally:
        await stop_edge(fast)
        await stop_edge(slow)
