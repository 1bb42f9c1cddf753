"""Upstreams on a real failing server: the circuit breakers are dated on the injected clock."""

from __future__ import annotations

import pytest
from aiohttp import web

from edge.singleflight import UpstreamFailed
from edge.upstream import Upstreams
from tests.conftest import serve_locally


async def test_the_breaker_cooldown_runs_on_the_given_clock() -> None:
    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{path:.*}", broken)
    runner, url = await serve_locally(app)
    now = [500.0]
    upstreams = Upstreams([url], clock=lambda: now[0])
    await upstreams.open()
    try:
        for _ in range(3):  # the breaker's threshold
            with pytest.raises(UpstreamFailed):
                async with upstreams.fetch("/titles/x/master.m3u8", {}):
                    pass
        breaker = upstreams.breakers[url]
        assert breaker.failing and breaker.open_until == 505.0  # 500 + the 5 s cooldown
        assert not breaker.available(now[0])
        now[0] = 505.0
        assert breaker.available(now[0])
    finally:
        await upstreams.close()
        await runner.cleanup()
