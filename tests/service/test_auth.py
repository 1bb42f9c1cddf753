"""Admin bearer tokens on a real server: 401 without, 403 wrong or disabled, JSON errors, never a token in
an answer or a log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from service.auth import NO_TOKEN, check_bearer
from service.errors import errors_as_json
from tests.conftest import serve_locally

TOKEN = "s3cret-tökén-value"
TOKEN_KEY = web.AppKey("token", str)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, str]]:
    """(URL of a server whose /admin needs TOKEN, URL of one with no token configured)."""

    async def admin(request: web.Request) -> web.Response:
        check_bearer(request, request.app[TOKEN_KEY] or None)
        return web.json_response({"ok": True})

    urls = []
    runners = []
    for token in (TOKEN, ""):
        app = web.Application(middlewares=[errors_as_json])
        app[TOKEN_KEY] = token
        app.router.add_post("/admin", admin)
        runner, url = await serve_locally(app)
        runners.append(runner)
        urls.append(url)
    yield urls[0], urls[1]
    for runner in runners:
        await runner.cleanup()


async def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, object]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(url + "/admin", headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing admin token: send Authorization: Bearer <token>"),
        ({"Authorization": ""}, 401, "missing admin token: send Authorization: Bearer <token>"),
        ({"Authorization": "Bearer"}, 401, "missing admin token: send Authorization: Bearer <token>"),
        ({"Authorization": "Bearer    "}, 401, "missing admin token: send Authorization: Bearer <token>"),
        ({"Authorization": f"Basic {TOKEN}"}, 401, "missing admin token: send Authorization: Bearer <token>"),
        ({"Authorization": "Bearer wrong"}, 403, "wrong admin token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403, "wrong admin token"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403, "wrong admin token"),
    ],
)
async def test_refused_with_the_right_status_as_json(
    server: tuple[str, str],
    headers: dict[str, str],
    status: int,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    got, response_headers, body = await post(server[0], headers)
    assert (got, body) == (status, {"error": message})
    assert response_headers["Content-Type"].startswith("application/json")
    assert ("WWW-Authenticate" in response_headers) == (status == 401)
    if status == 401:
        assert response_headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert TOKEN not in caplog.text and "wrong" not in str(response_headers)


async def test_the_right_token_passes_whatever_the_case_of_the_scheme(server: tuple[str, str]) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        status, _, body = await post(server[0], {"Authorization": f"{scheme} {TOKEN}"})
        assert (status, body) == (200, {"ok": True})


async def test_without_a_configured_token_every_request_is_refused(server: tuple[str, str]) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        status, _, body = await post(server[1], headers)
        assert (status, body) == (403, {"error": NO_TOKEN})


async def test_a_token_that_is_not_utf8_is_wrong_not_a_crash(server: tuple[str, str]) -> None:
    host, port = server[0].removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 403 ") and b'"wrong admin token"' in answer
