"""A packaged title with short segments, and small real HLS servers that can be told to misbehave.

The servers are aiohttp apps on 127.0.0.1 ephemeral ports serving the packaged files from disk; a
``Misbehaviour`` sees each request first and may answer it instead (stall, fail, throttle).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict

from tests.conftest import MakeSource, serve_locally
from transcoder.package import package_title
from transcoder.plan import PackageConfig

TITLE = "loadtest-title"
Misbehaviour = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True)
class Library:
    root: Path  # holds titles/<TITLE>/

    @property
    def title(self) -> Path:
        return self.root / "titles" / TITLE


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource) -> Library:
    """20 s of 640x360 with audio in 2 s segments: renditions 234p and 360p, ten segments each."""
    root = tmp_path_factory.mktemp("loadtest-library")
    (root / "titles").mkdir()
    source = make_source("loadtest-20s.mp4", width=640, height=360, duration=20)
    config = PackageConfig(segment_duration=2, keyframe_interval=1, preset="ultrafast")
    asyncio.run(package_title(source, root / "titles" / TITLE, config, title_id=TITLE))
    return Library(root)


@dataclass
class Seen:
    path: str  # without any pathway prefix
    query: dict[str, str]
    headers: CIMultiDict[str]
    prefix: str = ""


@dataclass
class MediaServer:
    """Serves ``root`` under ``/``; ``/<pathway>/...`` serves the same files (Content Steering tests)."""

    root: Path
    misbehave: Misbehaviour | None = None
    pathways: tuple[str, ...] = ()
    documents: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (type, body)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _cached: set[str] = field(default_factory=set)

    async def start(self) -> MediaServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner, self.url = await serve_locally(app, shutdown_timeout=0.5, handler_cancellation=True)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def master(self) -> str:
        return f"{self.url}/titles/{TITLE}/master.m3u8"

    def segments(self, prefix: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith(".m4s") and (prefix is None or s.prefix == prefix)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, prefix = request.path, ""
        first = path.split("/")[1]
        if first in self.pathways:
            prefix, path = first, path[len(first) + 1 :]
        self.seen.append(Seen(path, dict(request.query), request.headers.copy(), prefix))
        if path in self.documents:
            content_type, body = self.documents[path]
            return web.Response(text=body, content_type=content_type)
        relative = path.lstrip("/")
        if self.misbehave is not None:
            answer = await self.misbehave(request, relative)
            if answer is not None:
                return answer
        file = (self.root / relative).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            raise web.HTTPNotFound()
        # Like an edge: the first request of a path is a MISS, later ones HITs.
        cache = "HIT" if path in self._cached else "MISS"
        self._cached.add(path)
        return web.FileResponse(file, headers={"X-Cache": cache, "X-Served-By": "edge-test"})


@pytest_asyncio.fixture
async def serve(library: Library) -> AsyncIterator[Callable[..., Awaitable[MediaServer]]]:
    """``await serve(misbehave=..., pathways=...)`` → a started server, stopped after the test."""
    started: list[MediaServer] = []

    async def start(**options: object) -> MediaServer:
        server = await MediaServer(library.root, **options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
