"""What the front (service.front) and the renderers rely on from aiohttp, and the front's hand-over of
requests to it, checked on a real aiohttp server on 127.0.0.1. aiohttp is pinned to one minor series
in pyproject.toml; an upgrade that changes any of this fails here, loudly, instead of breaking the front
silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from service.errors import errors_as_json
from service.front import FrontServer, FrontSettings

PINNED = "3.14."  # pyproject.toml: aiohttp>=3.14,<3.15
OUR_DATE = formatdate(1_795_600_800, usegmt=True)


def test_the_pinned_series_is_installed() -> None:
    assert aiohttp.__version__.startswith(PINNED), (
        f"aiohttp {aiohttp.__version__} is not the pinned {PINNED}x: run this file and service/front.py's "
        "tests against it, then move the pin"
    )


def test_file_responses_are_prepared_their_own_way() -> None:
    # report_to_front prepares responses whose prepare is StreamResponse's (idempotent) and leaves the
    # others to aiohttp: FileResponse's sends its file again on a second call.
    assert web.Response.prepare is web.StreamResponse.prepare
    assert web.FileResponse.prepare is not web.StreamResponse.prepare


async def read_one(
    reader: asyncio.StreamReader, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or "content-length" not in headers:
        return int(status_line.split(" ")[1]), headers, b""
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split(" ")[1]), headers, body


async def plain(_request: web.Request) -> web.Response:
    return web.Response(text="plain", headers={"Date": OUR_DATE})


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = 8
    await response.prepare(request)
    if request.method != "HEAD":
        await response.write(b"streamed")
    await response.write_eof()
    return response


async def not_modified(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=304, headers={"ETag": '"x"'})
    await response.prepare(request)
    await response.write_eof()
    return response


async def broken(_request: web.Request) -> web.Response:
    raise RuntimeError("a handler's bug")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    page = tmp_path / "page.html"
    page.write_text("<p>file</p>")

    async def file(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(page)

    app = web.Application(middlewares=[errors_as_json])
    for path, handler in (("/plain", plain), ("/streamed", streamed), ("/304", not_modified),
                          ("/file", file), ("/broken", broken)):  # fmt: skip
        app.router.add_get(path, handler)
    FrontServer.install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    front = FrontServer(runner, "127.0.0.1", 0, FrontSettings(header_timeout=2))
    await front.start()
    try:
        yield "127.0.0.1", front.addresses[0][1]
    finally:
        front.stop()
        await runner.cleanup()


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_pipelined_answers_through_aiohttp_come_whole_and_in_order(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    paths = ["/plain", "/streamed", "/304", "/nowhere", "/plain", "/file", "/plain"]
    writer.write(b"".join(get(path) for path in paths) + get("/streamed", "HEAD"))
    answers = [await read_one(reader) for _ in paths]
    head = await read_one(reader, head_only=True)
    writer.close()
    assert [(status, body) for status, _, body in answers] == [
        (200, b"plain"), (200, b"streamed"), (304, b""), (404, b'{"error": "Not Found"}'), (200, b"plain"),
        (200, b"<p>file</p>"), (200, b"plain"),
    ]  # fmt: skip
    # aiohttp keeps a Date the app set (it only adds one when absent) and adds its Server token.
    assert answers[0][1]["date"] == OUR_DATE and answers[0][1]["server"].startswith("Python/")
    assert "date" in answers[1][1]
    # A 304 without a length is neither chunked nor given a body.
    assert "transfer-encoding" not in answers[2][1] and "content-length" not in answers[2][1]
    # HEAD keeps the Content-Length set on a StreamResponse, and sends no body (read_one read none).
    assert head[0] == 200 and head[1]["content-length"] == "8"


async def test_a_failing_handler_leaves_the_connection_usable(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(get("/broken") + get("/plain"))
    first, second = await read_one(reader), await read_one(reader)
    writer.close()
    assert (first[0], first[2]) == (500, b'{"error": "internal server error"}')
    assert (second[0], second[2]) == (200, b"plain")


async def test_a_request_aiohttp_refuses_is_answered_then_closed(server: tuple[str, int]) -> None:
    # The front hands such a head over and waits: aiohttp must end the connection, not leave it open.
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET /plain HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    # (aiohttp's own text/plain answer: it never reaches the app, so not the JSON error funnel's)
    assert answer.split(b" ", 2)[1] == b"400" and answer.endswith(b"^")


async def test_a_connection_left_to_aiohttp_idles_without_a_408(server: tuple[str, int]) -> None:
    # After a FileResponse the front leaves the connection to aiohttp: idle longer than the header
    # timeout (2 s here), it is neither answered 408 nor closed, and serves the next request.
    reader, writer = await asyncio.open_connection(*server)
    writer.write(get("/file"))
    assert (await read_one(reader))[2] == b"<p>file</p>"
    await asyncio.sleep(2.5)
    writer.write(get("/plain"))
    status, _, body = await read_one(reader)
    writer.close()
    assert (status, body) == (200, b"plain")
