"""Edge test peers: a real upstream on 127.0.0.1 that counts hits and can be told to stall, fail or
trickle, and a real ``surge edge`` process in front of it."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import serve_locally
from tests.origin.conftest import TOKEN, SurgeProcess

TITLE = "/titles/show-abc123"
SEGMENT = f"{TITLE}/360p/seg_00000.m4s"


def media_playlist(segments: int) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:6", "#EXT-X-PLAYLIST-TYPE:VOD",
             '#EXT-X-MAP:URI="init.mp4"']  # fmt: skip
    for index in range(segments):
        lines += ["#EXTINF:6,", f"seg_{index:05d}.m4s"]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


@dataclass
class Peer:
    objects: dict[str, bytes] = field(default_factory=dict)
    cache_control: str = "public, max-age=60"
    cache_controls: dict[str, str] = field(default_factory=dict)  # per path, instead of cache_control
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    conditional: collections.Counter[str] = field(default_factory=collections.Counter)
    fail_status: int | None = None
    stall: bool = False  # accept, then never answer
    trickle_bytes_per_s: int | None = None
    url: str = ""
    _runner: web.AppRunner | None = None

    def put(self, path: str, body: bytes) -> None:
        self.objects[path] = body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/t/"):  # signed by an edge with signing on: the peer takes it unchecked
            path = "/" + path.split("/", 3)[3]
        self.counts[path] += 1
        if self.stall:
            await asyncio.sleep(3600)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="peer told to fail")
        body = self.objects.get(path)
        if body is None:
            return web.Response(status=404, text="no such object")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {
            "Cache-Control": self.cache_controls.get(path, self.cache_control),
            "ETag": etag,
            "Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT",
            "Content-Type": "application/vnd.apple.mpegurl"
            if path.endswith(".m3u8")
            else "video/iso.segment",
            "Access-Control-Allow-Origin": "*",
        }
        if request.headers.get("If-None-Match") == etag:
            self.conditional[path] += 1
            return web.Response(status=304, headers=headers)
        if self.trickle_bytes_per_s is None:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        chunk = max(1, self.trickle_bytes_per_s // 20)
        for start in range(0, len(body), chunk):
            await response.write(body[start : start + chunk])
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    async def start(self) -> Peer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner, self.url = await serve_locally(app, shutdown_timeout=1)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = await Peer().start()
    server.put(f"{TITLE}/360p/index.m3u8", media_playlist(5))
    server.put(f"{TITLE}/360p/init.mp4", os.urandom(900))
    for index in range(5):
        server.put(f"{TITLE}/360p/seg_{index:05d}.m4s", os.urandom(300_000 + index))
    yield server
    await server.stop()


class EdgeProcess(SurgeProcess):
    def __init__(self, *args: str, token: str | None = TOKEN) -> None:
        super().__init__("edge", "--id", "edge-test", *args, token=token)


async def get(
    url: str, method: str = "GET", **headers: str
) -> tuple[int, aiohttp.typedefs.LooseHeaders, bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(method, url, headers=headers) as response,
    ):
        return response.status, response.headers.copy(), await response.read()
