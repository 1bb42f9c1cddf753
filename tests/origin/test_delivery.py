"""Delivery headers and safety, against a real origin process with a real packaged title."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.conftest import MakeSource
from tests.origin.conftest import OriginProcess, publish_small_title


@dataclass
class Published:
    origin: OriginProcess
    title_id: str

    @property
    def base(self) -> str:
        return f"{self.origin.url}/titles/{self.title_id}"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource) -> Iterator[Published]:
    origin = OriginProcess(tmp_path_factory.mktemp("origin") / "data", "--preset", "ultrafast").start()
    try:
        yield Published(origin, publish_small_title(origin, make_source))
    finally:
        origin.stop()


async def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(
            method, url, headers={"Accept-Encoding": "identity"} | headers, allow_redirects=False
        ) as response,
    ):
        return response.status, response.headers.copy(), await response.read()


@pytest.mark.parametrize(
    ("path", "content_type", "cache_control"),
    [
        ("master.m3u8", "application/vnd.apple.mpegurl", "public, max-age=2"),
        ("360p/index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=2"),
        ("360p/iframes.m3u8", "application/vnd.apple.mpegurl", "public, max-age=2"),
        ("audio/index.m3u8", "application/vnd.apple.mpegurl", "public, max-age=2"),
        ("360p/init.mp4", "video/mp4", "public, max-age=31536000, immutable"),
        ("360p/seg_00000.m4s", "video/iso.segment", "public, max-age=31536000, immutable"),
        ("audio/seg_00001.m4s", "video/iso.segment", "public, max-age=31536000, immutable"),
    ],
)
async def test_files_have_the_right_headers(
    published: Published, path: str, content_type: str, cache_control: str
) -> None:
    status, headers, body = await fetch(f"{published.base}/{path}")
    on_disk = (published.origin.data / "titles" / published.title_id / path).read_bytes()
    assert status == 200 and body == on_disk
    assert headers["Content-Type"] == content_type
    assert headers["Cache-Control"] == cache_control
    assert headers["Content-Length"] == str(len(on_disk))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"].startswith('"') and not headers["ETag"].startswith("W/")  # strong
    parsedate_to_datetime(headers["Last-Modified"])
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Range" in headers["Access-Control-Expose-Headers"]
    assert headers["Timing-Allow-Origin"] == "*"  # a cross-origin page sees the response's timings


async def test_head_has_headers_and_no_body(published: Published) -> None:
    status, headers, body = await fetch(f"{published.base}/360p/seg_00000.m4s", "HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) > 1000 and headers["Content-Type"] == "video/iso.segment"


async def test_conditional_requests_get_304(published: Published) -> None:
    url = f"{published.base}/360p/seg_00000.m4s"
    _, headers, _ = await fetch(url)
    status, again, body = await fetch(url, **{"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"") and again["ETag"] == headers["ETag"]
    status, _, _ = await fetch(url, **{"If-None-Match": '"something-else"'})
    assert status == 200
    status, _, body = await fetch(url, **{"If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (304, b"")
    before = parsedate_to_datetime(headers["Last-Modified"]).replace(year=2000)
    status, _, _ = await fetch(url, **{"If-Modified-Since": format_datetime(before, usegmt=True)})
    assert status == 200


async def test_ranges(published: Published) -> None:
    url = f"{published.base}/360p/seg_00000.m4s"
    whole = (published.origin.data / "titles" / published.title_id / "360p" / "seg_00000.m4s").read_bytes()
    status, headers, body = await fetch(url, Range="bytes=100-299")
    assert status == 206 and body == whole[100:300]
    assert headers["Content-Range"] == f"bytes 100-299/{len(whole)}"
    status, headers, body = await fetch(url, Range="bytes=-50")
    assert status == 206 and body == whole[-50:]
    status, headers, body = await fetch(url, Range=f"bytes={len(whole) - 10}-")
    assert status == 206 and body == whole[-10:]
    status, headers, _ = await fetch(url, Range=f"bytes={len(whole) + 10}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    # Multiple ranges may be refused (RFC 9110 14.2): never a wrong 206.
    status, _, body = await fetch(url, Range="bytes=0-9,20-29")
    assert status in (200, 416) and (status == 416 or body == whole)
    # A zero-length suffix is unsatisfiable (RFC 9110 14.1.1), not the whole body as a 206.
    status, headers, _ = await fetch(url, Range="bytes=-0")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"


@pytest.mark.parametrize("path", ["360p/seg_00000.m4s", "360p/index.m3u8"])  # on disk, and in memory
async def test_if_range(published: Published, path: str) -> None:
    url = f"{published.base}/{path}"
    whole = (published.origin.data / "titles" / published.title_id / path).read_bytes()
    _, headers, _ = await fetch(url)
    etag, modified = headers["ETag"], headers["Last-Modified"]
    for validator in (etag, modified):
        status, _, body = await fetch(url, Range="bytes=0-9", **{"If-Range": validator})
        assert (status, body) == (206, whole[:10])
    # RFC 9110 13.1.5: a validator that no longer matches gets the whole current body, 200.
    for stale in ('"0-0"', f"W/{etag}", "Tue, 01 Jan 2002 00:00:00 GMT"):
        status, headers, body = await fetch(url, Range="bytes=0-9", **{"If-Range": stale})
        assert (status, body) == (200, whole) and "Content-Range" not in headers


async def test_playlists_are_gzipped_for_clients_that_accept_it(published: Published) -> None:
    url = f"{published.base}/360p/index.m3u8"
    plain_status, plain_headers, plain = await fetch(url)
    status, headers, body = await fetch(url, **{"Accept-Encoding": "gzip, deflate"})
    assert plain_status == status == 200
    assert "Content-Encoding" not in plain_headers
    assert headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == plain and len(body) < len(plain)
    assert headers["ETag"] != plain_headers["ETag"]  # different representations, different validators
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    _, segment_headers, _ = await fetch(f"{published.base}/360p/seg_00000.m4s", **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in segment_headers


@pytest.mark.parametrize(
    ("path", "accept_encoding"),
    [("master.m3u8", "identity"), ("360p/index.m3u8", "gzip"), ("360p/init.mp4", "gzip"),
     ("360p/seg_00001.m4s", "identity")],
)  # fmt: skip
async def test_answers_from_memory_match_file_answers(
    published: Published, path: str, accept_encoding: str
) -> None:
    url = f"{published.base}/{path}"
    await fetch(url)  # the first request loads the file into memory
    status, fast, fast_body = await fetch(url, **{"Accept-Encoding": accept_encoding})
    # A validator that does not match makes it a conditional request, which FileResponse answers.
    file_status, slow, slow_body = await fetch(
        url, **{"Accept-Encoding": accept_encoding, "If-None-Match": '"other"'}
    )
    assert status == file_status == 200 and fast_body == slow_body
    ignored = {"date", "server"}
    assert sorted((k.lower(), v) for k, v in fast.items() if k.lower() not in ignored) == sorted(
        (k.lower(), v) for k, v in slow.items() if k.lower() not in ignored
    )
    status, head, body = await fetch(url, "HEAD", **{"Accept-Encoding": accept_encoding})
    assert (status, body, head["Content-Length"]) == (200, b"", fast["Content-Length"])
    assert parsedate_to_datetime(fast["Date"]).year >= 2026


async def test_cors_preflight(published: Published) -> None:
    status, headers, body = await fetch(
        f"{published.base}/360p/seg_00000.m4s",
        "OPTIONS",
        Origin="https://player.example",
        **{"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"},
    )
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "range"
    assert int(headers["Access-Control-Max-Age"]) > 0


async def test_catalog_lists_ready_titles(published: Published) -> None:
    status, headers, body = await fetch(f"{published.origin.url}/titles")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    import json

    titles = json.loads(body)["titles"]
    assert [t["id"] for t in titles] == [published.title_id]
    assert titles[0]["master"] == f"/titles/{published.title_id}/master.m3u8"


@pytest.mark.parametrize(
    "path",
    [
        "/titles/{id}/../../admin.token",
        "/titles/{id}/%2e%2e/%2e%2e/admin.token",
        "/titles/{id}/360p/..%2F..%2F..%2Fadmin.token",
        "/titles/{id}/360p/%2e%2e%2f%2e%2e%2f%2e%2e%2fjobs.sqlite",
        "/titles/..%2F..%2Fadmin.token/master.m3u8",
        "/titles/{id}/..%5c..%5cadmin.token/x",
        "/titles/{id}/360p/%00seg.m4s",
        "/titles/{id}/title.json",
        "/titles/{id}/360p/index.m3u8.gz",
        "/titles/{id}/360p/",
        "/titles/no-such-title/master.m3u8",
        "/titles/{id}/999p/seg_00000.m4s",
        "/titles/{id}/360p/seg_99999.m4s",
        "/titles/A_B/master.m3u8",
        "//etc/passwd",
        "/titles/{id}/360p/seg_00000.m4s/..",
    ],
)
async def test_traversal_and_unknown_paths_never_leak(published: Published, path: str) -> None:
    secret = (
        (published.origin.data / "admin.token").read_bytes()
        if (published.origin.data / "admin.token").exists()
        else b""
    )
    host, port = published.origin.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    raw = path.format(id=published.title_id)
    writer.write(f"GET {raw} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 404), (raw, response[:200])
    assert b"SQLite format" not in response and (not secret or secret.strip() not in response)
    assert b'{"error"' in response


async def test_request_times_are_finer_than_whole_milliseconds(published: Published) -> None:
    # Requests answered through aiohttp (here /healthz): its own clock under uvloop has whole milliseconds.
    for n in range(8):
        status, _, _ = await fetch(f"{published.origin.url}/healthz?n={n}")
        assert status == 200
    for _ in range(50):
        lines = [e for e in published.origin.log if e.get("event") == "request" and "n=" in e.get("path", "")]
        if len(lines) == 8:
            break
        await asyncio.sleep(0.1)
    assert len(lines) == 8
    assert any(line["ms"] != int(line["ms"]) for line in lines), lines


async def test_healthz_and_metrics(published: Published) -> None:
    status, _, body = await fetch(f"{published.origin.url}/healthz")
    assert status == 200 and b'"ok"' in body
    await fetch(f"{published.base}/360p/seg_00000.m4s")
    status, headers, body = await fetch(f"{published.origin.url}/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert (
        'surge_origin_requests_total{method="GET",route="/titles/{title_id}/{rendition}/{file}",status="200"}'
        in text
    )
    assert 'surge_origin_response_bytes_total{route="/titles/{title_id}/{rendition}/{file}"}' in text
    assert 'surge_origin_titles{status="ready"} 1.0' in text
    assert "surge_origin_jobs_running 0.0" in text


def test_one_log_line_per_request(published: Published) -> None:
    asyncio.run(fetch(f"{published.base}/360p/init.mp4?probe=log"))
    for _ in range(50):
        lines = [
            e
            for e in published.origin.log
            if e.get("event") == "request" and "probe=log" in e.get("path", "")
        ]
        if lines:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert len(lines) == 1
    line = lines[0]
    assert line["status"] == 200 and line["method"] == "GET" and line["bytes"] > 0 and line["ms"] >= 0
    assert line["component"] == "origin" and line["level"] == "info"


def test_nothing_outside_titles_is_served(published: Published, tmp_path: Path) -> None:
    # A symlink planted inside a title must not lead outside the library.
    title = published.origin.data / "titles" / published.title_id
    (title / "leak").symlink_to(published.origin.data)
    try:
        status, _, body = asyncio.run(fetch(f"{published.base}/leak/admin.token"))
        assert status in (400, 404) and b"error" in body
    finally:
        (title / "leak").unlink()


def test_no_access_log_keeps_metrics(tmp_path: Path) -> None:
    quiet = OriginProcess(tmp_path / "data", "--no-access-log").start()
    try:
        assert asyncio.run(fetch(f"{quiet.url}/healthz"))[0] == 200
        _, _, body = asyncio.run(fetch(f"{quiet.url}/metrics"))
        assert 'surge_origin_requests_total{method="GET",route="/healthz",status="200"} 1.0' in body.decode()
    finally:
        quiet.stop()
    assert not [e for e in quiet.log if e.get("event") == "request"]
