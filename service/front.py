"""The protocol in front of aiohttp on every connection: a fast path for plain cached GETs, a header-read
timeout and the keep-alive idle timeout.

Fast path: a plain keep-alive ``GET``/``HEAD`` (HTTP/1.1, no body, a path of plain characters) whose
answer the app's responder can render without waiting — an edge's object in memory, an origin's
published file in memory; the responder renders the same decision aiohttp's handler would (edge.answer,
origin.answer) — is answered right in ``data_received`` with one write (a large one at the end of the
loop pass: ``Outbox``): no request object, no task, no middleware chain. On a 2-core machine aiohttp's
web layer alone costs about half a playlist hit's CPU time (bench/edge), and the common case needs none
of it. Everything else (a miss, a revalidation, a refusal, a body, an odd request line, anything the
recogniser is unsure of) goes to aiohttp's own parser and handlers unchanged. The recogniser never
rejects: it only says "simple" or "not simple".

Order on a connection is kept: a request handed to aiohttp is handed over alone (exactly its head, for
a request without a body), and what follows it waits here until aiohttp has finished that response. The
front keeps its own count of the requests aiohttp is answering on each connection, from
``report_to_front``, the outermost middleware of every app it serves: it tells the front when aiohttp's
handlers start a request and once its response is written whole (it prepares and ends the response
itself; aiohttp's own prepare and write_eof are then no-ops). A request that may carry a body, or an
upgrade, or one whose handler failed, hands the rest of the connection to aiohttp for good.

Only aiohttp's public API is used: ``BaseRunner.server`` as the protocol factory, the middleware, and
``StreamResponse.prepare``/``write_eof``/``keep_alive``. tests/service/test_aiohttp_contract.py checks the
behaviours relied on, for an upgrade of the pinned aiohttp series.

Timeouts: aiohttp has only an idle keep-alive timeout, and it cannot see requests answered here, so the
front owns both: a client that starts a request and does not finish its headers within
``header_timeout`` gets ``408`` and is disconnected; a connection with nothing in progress for
``idle_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

from aiohttp import web

from service.errors import error_parts

logger = logging.getLogger("surge.front")

TIMEOUT = error_parts(408, "the request headers came too slowly", {"Connection": "close"})

MAX_HEAD = 8190  # aiohttp's own line limit; a longer head goes to aiohttp, which answers 400/431
DEFER_BODY = 64 * 1024  # answers this large are written at the end of the loop pass (Outbox)
PENDING_LIMIT = 64 * 1024  # bytes held while a response is in progress before the client is paused
# Path of plain characters (no percent-encoding, quotes or backslashes), then an optional query that may
# be percent-encoded (a CMCD query is): what needs no decoding to be looked up or logged.
_PLAIN_TARGET = re.compile(rb"/[A-Za-z0-9/._~!$&'()*+,;=:@-]*(?:\?[A-Za-z0-9/._~!$&'()*+,;=:@?%-]*)?")
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
# Header names after which aiohttp must have the rest of the connection: a body may follow, or a switch.
_BODY_OR_SWITCH = (b"content-length", b"transfer-encoding", b"upgrade")
_NOT_SIMPLE_HEADERS = frozenset((*_BODY_OR_SWITCH, b"expect"))


@dataclass(slots=True)
class SimpleRequest:
    method: str  # "GET" or "HEAD"
    path: str
    query: str
    headers: dict[bytes, bytes]  # lower-case names
    peer: str = ""  # the client's address


@dataclass(slots=True)
class Answer:
    head: bytes  # status line and headers, through the blank line
    body: bytes | memoryview  # empty for HEAD
    status: int
    route: str  # the metrics label, as aiohttp's route of the same request would be


FastResponder = Callable[[SimpleRequest], Answer | None]
AnswerObserver = Callable[[SimpleRequest, Answer, float, str], None]  # request, answer, seconds, peer
FAST_PATH: web.AppKey[FastResponder] = web.AppKey("fast_path")


def parse_simple(head: bytes) -> SimpleRequest | None:
    """A request head (without its blank line) that is a plain keep-alive GET/HEAD, else None."""
    lines = head.split(b"\r\n")
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
        return None  # a bare CR or LF: let the strict parser judge it
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    method = _METHODS.get(parts[0])
    if method is None or _PLAIN_TARGET.fullmatch(parts[1]) is None:
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.strip() != name:
            return None  # no colon, an empty name, obs-fold or space before the colon
        headers[name.lower()] = value.strip(b" \t")
    if not _NOT_SIMPLE_HEADERS.isdisjoint(headers):
        return None
    connection = headers.get(b"connection")
    if connection is not None and connection.lower() != b"keep-alive":
        return None
    path, _, query = parts[1].decode("ascii").partition("?")
    return SimpleRequest(method, path, query, headers)


def may_have_body(head: bytes) -> bool:
    """Conservative: any mention of a body or a protocol switch counts."""
    lower = head.lower()
    return any(word in lower for word in _BODY_OR_SWITCH) or lower.startswith(b"connect ")


def render_head(status: int, headers: Mapping[str, str], content_length: int | None) -> bytes:
    """Status line and header lines, without the blank line (the caller may add more lines first)."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value\r\n`` for each header."""
    return "".join([f"{name}: {value}\r\n" for name, value in headers.items()]).encode("utf-8")


class _DateCache:
    second = -1
    text = ""
    line = b""


def http_date(now: float) -> str:
    """The IMF-fixdate of ``now`` (RFC 9110 5.6.7), formatted once per second."""
    second = int(now)
    if second != _DateCache.second:
        _DateCache.text = formatdate(second, usegmt=True)
        _DateCache.line = f"Date: {_DateCache.text}\r\n".encode()
        _DateCache.second = second
    return _DateCache.text


def date_line(now: float) -> bytes:
    """``Date: <IMF-fixdate>\r\n`` for ``now``, formatted once per second."""
    http_date(now)
    return _DateCache.line


@dataclass(frozen=True)
class FrontSettings:
    header_timeout: float = 10.0
    idle_timeout: float = 75.0  # aiohttp's keep-alive default
    responder: FastResponder | None = None
    on_answer: AnswerObserver | None = None


class Outbox:
    """Large answers of one event-loop pass, written together at its end.

    A segment's write is one long kernel copy that leaves the CPU caches cold for the Python that answers
    the next request. Answering every ready connection first and then writing them back to back keeps that
    code warm (bench/edge). Each connection defers at most one answer per pass; its next request waits for
    the flush, so pipelined answers keep their order and flow control still applies.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop  # asyncio.get_running_loop() would make a getpid() system call every pass
        self._waiting: list[FrontProtocol] = []

    def add(self, front: FrontProtocol) -> None:
        if not self._waiting:
            self._loop.call_soon(self.flush)
        self._waiting.append(front)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        written = [(front, self._guarded(front, front.write_deferred)) for front in waiting]
        for front, done in written:
            if done is not None:
                self._guarded(front, functools.partial(front.deferred_sent, done))

    @staticmethod
    def _guarded(front: FrontProtocol, step: Callable[[], float | None]) -> float | None:
        """One connection's failure (an observer's bug, say) closes that connection, not every other one
        waiting in this pass."""
        try:
            return step()
        except Exception:
            logger.exception("answering up front failed; the connection is closed")
            front.abort()
            return None


class FrontProtocol(asyncio.Protocol):
    def __init__(
        self, inner: asyncio.Protocol, settings: FrontSettings, outbox: Outbox | None = None
    ) -> None:
        self.inner = inner
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._outbox = outbox if outbox is not None else Outbox(self._loop)
        self._deferred: tuple[SimpleRequest, Answer, float] | None = None  # answered, not yet written
        self.transport: asyncio.Transport | None = None
        self._pending = b""  # received, not yet answered nor handed over
        self._slow = False  # a request handed to aiohttp, its response not finished
        self._handed_over = False  # aiohttp has the rest of this connection
        self._in_aiohttp = 0  # requests aiohttp's handlers are answering now (report_to_front)
        self._write_paused = False
        self._read_paused = False
        self._peer = ""
        self._last_active = self._loop.time()
        self._header_deadline: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport: uvloop's implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.inner.connection_made(transport)
        self._idle_timer = self._loop.call_later(self.settings.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        if self._handed_over:
            self.inner.data_received(data)
            self._watch_aiohttp_headers()
            return
        self._pending = self._pending + data if self._pending else data
        self._serve_pending()

    def eof_received(self) -> None:
        self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._pending = b""
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.inner.resume_writing()
        if self._pending and not self._handed_over:
            self._serve_pending()

    # Called by report_to_front, from inside aiohttp's handling of a request on this connection.

    def aiohttp_started(self) -> None:
        self._in_aiohttp += 1
        self._cancel_header_deadline()

    def aiohttp_finished(self, keep_alive: bool) -> None:
        """The response is written whole: what follows may be answered here again."""
        self._in_aiohttp -= 1
        self._last_active = self._loop.time()
        if not self._slow:
            return
        self._slow = False
        if not keep_alive:
            self._pending = b""
            self._handed_over = True  # aiohttp closes the connection; nothing more is answered here
        elif self._pending:
            # Not from inside aiohttp's handler: carry on once it has wound down this request.
            self._loop.call_soon(self._serve_pending)

    def aiohttp_failed(self) -> None:
        """aiohttp answers (or closes) after the handler, when the front cannot know (the handler
        raised, or its response is one aiohttp must prepare itself): it gets the rest of the
        connection."""
        self._in_aiohttp -= 1
        self._slow = False
        if not self._handed_over:
            self._hand_over(self._pending)

    # The work.

    def _serve_pending(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._handed_over:
            return
        pending = self._pending
        responder = self.settings.responder
        while pending and not self._slow and not self._write_paused and self._deferred is None:
            end = pending.find(b"\r\n\r\n")
            if end < 0:
                if len(pending) > MAX_HEAD or b"\n\n" in pending:
                    self._hand_over(pending)
                    return
                break
            head = pending[:end]
            request = parse_simple(head) if responder is not None else None
            answer = None
            if request is not None and responder is not None:
                started = time.perf_counter()
                request.peer = self._peer
                answer = self._answer(responder, request)
            if answer is not None and request is not None:
                pending = pending[end + 4 :]
                if len(answer.body) >= DEFER_BODY:
                    self._deferred = (request, answer, started)
                    self._outbox.add(self)
                    break
                transport.write(answer.head + answer.body)  # uvloop writes small ones at the pass's end
                if self.settings.on_answer is not None:
                    self.settings.on_answer(request, answer, time.perf_counter() - started, self._peer)
                continue
            if request is None and may_have_body(head):
                self._hand_over(pending)
                return
            self._slow = True
            self.inner.data_received(pending[: end + 4])
            pending = pending[end + 4 :]
        self._pending = pending
        self._flow_control()
        if self._waiting_for_headers():
            # Also a head aiohttp has not taken as a whole request (an odd protocol line): it gets an
            # answer (400) or a 408 once the header timeout passes, never a hang.
            self._start_header_deadline()
        else:
            self._cancel_header_deadline()

    @staticmethod
    def _answer(responder: FastResponder, request: SimpleRequest) -> Answer | None:
        try:
            return responder(request)
        except Exception:
            logger.exception("fast path failed; the request goes the slow way")
            return None

    def write_deferred(self) -> float:
        """Write the deferred answer (one writev, no copy of the body); when it was handed to the kernel."""
        assert self._deferred is not None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            _, answer, _ = self._deferred
            transport.writelines((answer.head, answer.body))
        return time.perf_counter()

    def deferred_sent(self, done: float) -> None:
        assert self._deferred is not None
        request, answer, started = self._deferred
        self._deferred = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client went away before its answer was written
        if self.settings.on_answer is not None:
            self.settings.on_answer(request, answer, done - started, self._peer)
        if self._pending:
            self._serve_pending()

    def abort(self) -> None:
        self._deferred = None
        if self.transport is not None:
            self.transport.abort()

    def _hand_over(self, data: bytes) -> None:
        self._handed_over = True
        self._pending = b""
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        self._cancel_header_deadline()
        if data:
            self.inner.data_received(data)
            self._watch_aiohttp_headers()

    def _flow_control(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if len(self._pending) > PENDING_LIMIT and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()
        elif len(self._pending) <= PENDING_LIMIT and self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    # Header timeout.

    def _watch_aiohttp_headers(self) -> None:
        if self._in_aiohttp:
            self._cancel_header_deadline()
        else:
            self._start_header_deadline()

    def _waiting_for_headers(self) -> bool:
        if self._handed_over:
            return not self._in_aiohttp
        if self._slow:
            return not self._in_aiohttp  # handed over, not taken up as a request yet
        return bool(self._pending) and self._deferred is None

    def _start_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self._loop.call_later(self.settings.header_timeout, self._expire)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        transport = self.transport
        if transport is not None and not transport.is_closing() and self._waiting_for_headers():
            status, headers, body = TIMEOUT
            transport.write(render_head(status, headers, len(body)) + date_line(time.time()) + b"\r\n" + body)
            transport.close()

    # Idle timeout.

    def _busy(self) -> bool:
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            return True
        if self._handed_over:
            return self._in_aiohttp > 0
        return self._slow or bool(self._pending) or self._deferred is not None

    def _check_idle(self) -> None:
        self._idle_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        now = self._loop.time()
        idle_until = self._last_active + self.settings.idle_timeout
        if not self._busy() and now >= idle_until:
            transport.close()
            return
        self._idle_timer = self._loop.call_at(max(idle_until, now + 1.0), self._check_idle)


def _front_of(request: web.BaseRequest) -> FrontProtocol | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, FrontProtocol) else None


@web.middleware
async def report_to_front(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The outermost middleware of an app behind the front: it tells the connection's front when a
    request starts, and when its response is written whole. A response whose ``prepare`` is
    StreamResponse's (idempotent: aiohttp calls it again, and ``write_eof``, as no-ops) is prepared and
    ended here; any other (a FileResponse sends its file again on a second ``prepare``) is left to
    aiohttp, and the front then leaves it the rest of the connection."""
    front = _front_of(request)
    if front is None:
        return await handler(request)
    front.aiohttp_started()
    try:
        response = await handler(request)
    except BaseException:
        front.aiohttp_failed()
        raise
    if not response.prepared and type(response).prepare is not web.StreamResponse.prepare:
        front.aiohttp_failed()
        return response
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        front.aiohttp_failed()  # the client left: aiohttp winds the request down as it would have
        return response
    front.aiohttp_finished(bool(response.keep_alive))
    return response


class FrontServer:
    """A listening socket whose connections get the front protocol, in front of the runner's aiohttp
    server (``BaseRunner.server``, aiohttp's protocol factory); the runner's app must have
    ``report_to_front`` as its outermost middleware (``install``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        settings: FrontSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_address: bool = True,
    ) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.settings = settings
        self.ssl_context = ssl_context
        self.reuse_address = reuse_address
        self._server: asyncio.Server | None = None

    @staticmethod
    def install(app: web.Application) -> None:
        """Before the runner's setup: make ``report_to_front`` the outermost middleware."""
        app.middlewares.insert(0, report_to_front)

    async def start(self) -> None:
        server = self.runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting the front")
        loop = asyncio.get_running_loop()
        settings, outbox = self.settings, Outbox(loop)
        self._server = await loop.create_server(
            lambda: FrontProtocol(server(), settings, outbox),
            self.host,
            self.port,
            reuse_address=self.reuse_address,
            ssl=self.ssl_context,  # the front then reads and writes plain bytes over TLS
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        if self._server is None:
            return []
        return [socket.getsockname()[:2] for socket in self._server.sockets]

    def stop(self) -> None:
        """Stop accepting; connections already open keep being served."""
        if self._server is not None:
            self._server.close()
