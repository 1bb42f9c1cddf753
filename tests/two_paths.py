"""Sending one table of requests to two servers, one answering up front and one through aiohttp only
(``SURGE_NO_FAST_PATH=1``), and comparing their answers (tests/edge/test_two_paths.py,
tests/origin/test_two_paths.py).

Per-answer values (``Date``, ``Age``) are compared by presence. ``Server`` is aiohttp's own product
token, which answers given up front do not carry: it tells which path answered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

PER_ANSWER = ("date", "age")
ETAG = "ETAG"  # in a row's header values: replaced by the object's real ETag when the table is sent
Row = tuple[str, str, dict[str, str]]  # method, target, headers


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def comparable(self) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: ("<present>" if k in PER_ANSWER else v) for k, v in self.headers.items() if k != "server"
        }
        return self.status, headers, self.body


async def exchange(url: str, method: str, target: str, headers: dict[str, str]) -> Response:
    """One request, sent exactly as written (no client normalises its target), on a keep-alive
    connection as a player's would be."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        found: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            assert name.lower() not in found, f"{name} sent twice"
            found[name.lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        if method == "HEAD" or status in (204, 304):
            return Response(status, found, b"")
        if found.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await asyncio.wait_for(reader.readline(), 10)).strip(), 16):
                body += await asyncio.wait_for(reader.readexactly(size + 2), 10)
                body = body[:-2]
            return Response(status, found, body)
        return Response(
            status, found, await asyncio.wait_for(reader.readexactly(int(found["content-length"])), 10)
        )
    finally:
        writer.close()


async def send_both(
    fast_url: str, slow_url: str, rows: list[Row], etag: str
) -> list[tuple[Response, Response]]:
    pairs = []
    for method, target, headers in rows:
        headers = {k: v.replace(ETAG, etag) for k, v in headers.items()}
        fast = await exchange(fast_url, method, target, headers)
        slow = await exchange(slow_url, method, target, headers)
        assert fast.comparable() == slow.comparable(), (method, target, headers)
        pairs.append((fast, slow))
    return pairs
