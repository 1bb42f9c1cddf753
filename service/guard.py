"""A header-read timeout for aiohttp servers: a client that starts a request and does not finish its
headers within ``header_timeout`` seconds gets ``408 Request Timeout`` and is disconnected.

aiohttp has no such timeout (only an idle keep-alive one), so a slow-headers client could hold a
connection for ever. The guard wraps each connection's protocol and only reads aiohttp's parser queue;
it never changes how requests are handled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b'Content-Length: 48\r\n\r\n{"error": "the request headers came too slowly"}'
)


class HeaderTimeoutGuard(asyncio.Protocol):
    def __init__(self, inner: RequestHandler, header_timeout: float) -> None:
        self.inner = inner
        self.header_timeout = header_timeout
        self.transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)

    def _waiting_for_headers(self) -> bool:
        return not self.inner._request_in_progress and not self.inner._messages

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)
        if not self._waiting_for_headers():
            self._cancel()
        elif self._deadline is None and data:
            self._deadline = asyncio.get_running_loop().call_later(self.header_timeout, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing() and self._waiting_for_headers():
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedTCPSite(web.TCPSite):
    """A TCPSite whose connections get the header timeout."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.header_timeout = header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        timeout = self.header_timeout
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HeaderTimeoutGuard(server(), timeout),
            self._host,
            self._port,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            backlog=self._backlog,
        )
