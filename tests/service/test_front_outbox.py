"""Large answers given up front are written at the end of each loop pass (service.front.Outbox): on a real
server and real sockets, one connection's failure must not hold up the others waiting in that pass."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from aiohttp import web

from service.front import Answer, FrontServer, FrontSettings, SimpleRequest

BODY = os.urandom(200_000)  # large enough to be written at the end of the pass
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)


def answer_everything(_: SimpleRequest) -> Answer:
    return Answer(HEAD, BODY, 200, "/any")


def fail_on_bad(request: SimpleRequest, _answer: Answer, _seconds: float, _peer: str) -> None:
    if request.path == "/bad":
        raise RuntimeError("an observer's bug")


async def test_a_failing_connection_closes_alone(caplog: pytest.LogCaptureFixture) -> None:
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    settings = FrontSettings(responder=answer_everything, on_answer=fail_on_bad)
    front = FrontServer(runner, "127.0.0.1", 0, settings)
    await front.start()
    port = front.addresses[0][1]
    try:
        paths = ["/good", "/bad", "/good", "/good"]
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in paths]
        for (_, writer), path in zip(connections, paths, strict=True):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 2)  # two answers each
        for (reader, writer), path in zip(connections, paths, strict=True):
            if path == "/bad":
                # Its first answer was written before the observer failed; then it is closed.
                assert await asyncio.wait_for(reader.read(), 5) == HEAD + BODY
            else:
                for _ in range(2):
                    assert await asyncio.wait_for(reader.readexactly(len(HEAD) + len(BODY)), 5) == HEAD + BODY
            writer.close()
        assert any("connection is closed" in r.message and r.levelno == logging.ERROR for r in caplog.records)
    finally:
        front.stop()
        await runner.cleanup()
