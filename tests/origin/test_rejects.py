"""Requests aiohttp's parser refuses, credentials in requests, and clients that leave: one log line at
warning without header values or tokens, and a count in /metrics by status."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.origin.conftest import OriginProcess

SECRET = "SECRETTOKEN-7f3a9c"


async def raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_rejected_requests_are_logged_once_and_counted(origin: OriginProcess) -> None:
    too_long = f"Authorization: Bearer {SECRET}{'A' * 9000}\r\n"
    answers = [
        await raw_exchange(origin.url, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{too_long}\r\n".encode()),
        await raw_exchange(origin.url, b"GARBAGE\r\n\r\n"),
    ]
    assert all(answer.startswith(b"HTTP/1.0 400 ") for answer in answers)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.url}/titles", params={"token": SECRET, "page": "2"}) as response:
            assert response.status == 200
        async with session.get(f"{origin.url}/metrics") as response:
            metrics = await response.text()
    assert 'surge_origin_requests_total{method="UNKNOWN",route="rejected",status="400"} 2.0' in metrics
    origin.stop()
    rejected = [e for e in origin.log if e.get("event") == "rejected request"]
    assert [(e["level"], e["status"]) for e in rejected] == [("warning", 400), ("warning", 400)]
    assert not [e for e in origin.log if e.get("level") == "error"], origin.log
    assert SECRET not in "\n".join(json.dumps(e) for e in origin.log)
    assert origin.requests_for("/titles?token=REDACTED&page=2") == 1
