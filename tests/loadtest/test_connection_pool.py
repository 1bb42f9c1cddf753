"""Which idle connection the viewers' pool reuses, checked on a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from loadtest.driver import NewestIdleFirst


@dataclass
class Server:
    """Records each request's client port; holds the requests named in ``held`` until their event is
    set, and sets ``all_held`` once every one of them has arrived."""

    base: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    all_held: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    made = Server()

    async def answer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        assert request.transport is not None
        made.ports[name] = request.transport.get_extra_info("peername")[1]
        if made.held.keys() <= made.ports.keys():
            made.all_held.set()
        if name in made.held:
            await made.held[name].wait()
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/{name}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listening).start()
    made.base = f"http://127.0.0.1:{listening.getsockname()[1]}"
    try:
        yield made
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("connector", "reused"),
    [(NewestIdleFirst, "late"), (aiohttp.TCPConnector, "early")],  # aiohttp's own: the oldest idle one
)
async def test_the_viewers_pool_reuses_the_connection_released_last_as_chromium_does(
    server: Server, connector: type[aiohttp.TCPConnector], reused: str
) -> None:
    server.held.update(early=asyncio.Event(), late=asyncio.Event())  # answered, and released, in this order
    async with aiohttp.ClientSession(connector=connector()) as session:

        async def get(name: str) -> str:
            async with session.get(f"{server.base}/{name}", timeout=aiohttp.ClientTimeout(total=10)) as reply:
                return await reply.text()

        loads = {name: asyncio.create_task(get(name)) for name in server.held}
        async with asyncio.timeout(10):
            await server.all_held.wait()  # both requests in, on two connections
            for name in ("early", "late"):
                server.held[name].set()
                assert await loads[name] == name
        assert await get("next") == "next"
    assert server.ports["early"] != server.ports["late"]
    assert server.ports["next"] == server.ports[reused]
