"""An origin gives the same answers up front (the front's fast path) and through aiohttp's handlers.

One table of requests goes, in the same order, to two real origins serving copies of one library: one
as shipped, one with ``SURGE_NO_FAST_PATH=1``; status, headers and body must agree (tests/two_paths.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from service.serve import NO_FAST_PATH_ENV
from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, publish_small_title
from tests.two_paths import ETAG, Row, exchange, send_both

LATER = "Thu, 26 Nov 2099 10:00:00 GMT"


def origin_rows(title: str) -> list[Row]:
    base = f"/titles/{title}"
    playlist, segment = f"{base}/360p/index.m3u8", f"{base}/360p/seg_00000.m4s"
    rows: list[Row] = []
    for path in (f"{base}/master.m3u8", playlist, segment, f"{base}/360p/init.mp4"):
        rows += [("GET", path, {}), ("HEAD", path, {})]
    rows += [
        ("GET", playlist, {"Accept-Encoding": "gzip, deflate"}),
        ("HEAD", playlist, {"Accept-Encoding": "gzip"}),
        ("GET", playlist, {"Accept-Encoding": "identity"}),
        ("GET", segment, {"Accept-Encoding": "gzip"}),
        ("GET", segment, {"If-None-Match": ETAG}),
        ("GET", segment, {"If-None-Match": f"W/{ETAG}"}),
        ("GET", segment, {"If-None-Match": '"other"'}),
        ("GET", segment, {"If-Modified-Since": LATER}),
        ("GET", segment, {"If-Modified-Since": "Tue, 01 Jan 2002 00:00:00 GMT"}),
        ("GET", segment, {"If-Match": ETAG}),
        ("GET", segment, {"If-Match": '"other"'}),
        ("GET", segment, {"If-Unmodified-Since": "Tue, 01 Jan 2002 00:00:00 GMT"}),
        ("GET", segment, {"Range": "bytes=0-99"}),
        ("HEAD", segment, {"Range": "bytes=0-99"}),
        ("GET", segment, {"Range": "bytes=-100"}),
        ("GET", segment, {"Range": "bytes=100-"}),
        ("GET", segment, {"Range": "bytes=99999999-"}),
        ("GET", segment, {"Range": "bytes=-0"}),
        ("GET", segment, {"Range": "bytes=9-0"}),
        ("GET", segment, {"Range": "bytes=0-1,5-6"}),
        ("GET", segment, {"Range": "bytes=0-9", "If-Range": ETAG}),
        ("GET", segment, {"Range": "bytes=0-9", "If-Range": '"other"'}),
        ("GET", segment, {"Range": "bytes=0-9", "If-None-Match": ETAG}),
        ("GET", playlist, {"Range": "bytes=0-9", "Accept-Encoding": "gzip"}),
        ("GET", segment + "?CMCD=br%3D800", {"CMCD-Request": "bl=2000"}),
        ("GET", f"{base}/360p/seg_09999.m4s", {}),
        ("GET", f"{base}/360p/other.txt", {}),
        ("GET", "/titles/no-such-title/master.m3u8", {}),
        ("GET", "/titles/BAD!/master.m3u8", {}),
        ("GET", f"{base}/..%2F..%2Fadmin.token", {}),
        ("GET", f"/t/not-a-token{segment}", {}),  # signing off: the token is dropped
        ("GET", "/titles", {}),
    ]
    return rows


@pytest.fixture(scope="module")
def origins(
    tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource
) -> Iterator[tuple[OriginProcess, OriginProcess, str]]:
    data = tmp_path_factory.mktemp("origin") / "data"
    fast = OriginProcess(data, "--preset", "ultrafast").start()
    try:
        title = publish_small_title(fast, make_source)
        copy = tmp_path_factory.mktemp("origin-copy") / "data"
        shutil.copytree(data, copy)  # copies keep mtimes, so ETags agree
        os.environ[NO_FAST_PATH_ENV] = "1"
        try:
            slow = OriginProcess(copy).start()
        finally:
            del os.environ[NO_FAST_PATH_ENV]
        try:
            yield fast, slow, title
        finally:
            slow.stop()
    finally:
        fast.stop()


async def test_an_origin_answers_alike_up_front_and_through_aiohttp(
    origins: tuple[OriginProcess, OriginProcess, str],
) -> None:
    fast, slow, title = origins
    rows = origin_rows(title)
    for origin in (fast, slow):  # the first request of a file finds it; later ones are answered from memory
        for method, target, _ in rows:
            await exchange(origin.url, method, target, {})
    segment = f"/titles/{title}/360p/seg_00000.m4s"
    etag = (await exchange(fast.url, "GET", segment, {})).headers["etag"]
    pairs = await send_both(fast.url, slow.url, rows, etag)
    assert {200, 206, 304, 400, 404, 412, 416} <= {fast.status for fast, _ in pairs}
    up_front = [
        fast for fast, _ in pairs if fast.status in (200, 206, 304) and "content-type" in fast.headers
    ]
    assert sum("server" not in r.headers for r in up_front) >= 25
    assert all("server" in slow.headers for _, slow in pairs)
