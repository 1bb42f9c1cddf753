"""The front's request recogniser and response rendering: values in, values out."""

from __future__ import annotations

import pytest

from service.front import date_line, may_have_body, parse_simple, render_head


def head(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


def test_a_plain_get_is_recognised_with_lower_case_header_names() -> None:
    request = parse_simple(head("GET /titles/a/360p/seg_00001.m4s?CMCD=br%3D800 HTTP/1.1", "Host: x",
                                "Accept-Encoding: gzip", "Connection: Keep-Alive"))  # fmt: skip
    assert request is not None
    assert (request.method, request.path, request.query) == (
        "GET",
        "/titles/a/360p/seg_00001.m4s",
        "CMCD=br%3D800",
    )
    assert request.headers == {b"host": b"x", b"accept-encoding": b"gzip", b"connection": b"Keep-Alive"}
    head_request = parse_simple(head("HEAD /x HTTP/1.1"))
    assert head_request is not None and head_request.method == "HEAD" and head_request.headers == {}


@pytest.mark.parametrize(
    "lines",
    [
        ("GET /x HTTP/1.0", "Host: x"),  # 1.0: no keep-alive by default
        ("POST /x HTTP/1.1", "Host: x"),
        ("PURGE /x HTTP/1.1", "Host: x"),
        ("OPTIONS /x HTTP/1.1", "Host: x"),
        ("GET /titles/%2e%2e/x HTTP/1.1", "Host: x"),  # percent-encoded path: aiohttp decodes and judges
        ('GET /x"y HTTP/1.1', "Host: x"),
        ("GET /a\\b HTTP/1.1", "Host: x"),
        ("GET http://x/y HTTP/1.1", "Host: x"),
        ("GET * HTTP/1.1", "Host: x"),
        ("GET  /x HTTP/1.1", "Host: x"),
        ("GET /x HTTP/1.1 extra", "Host: x"),
        ("GET /x HTTP/1.1", "Connection: close"),
        ("GET /x HTTP/1.1", "Connection: upgrade", "Upgrade: websocket"),
        ("GET /x HTTP/1.1", "Content-Length: 5"),
        ("GET /x HTTP/1.1", "Transfer-Encoding: chunked"),
        ("GET /x HTTP/1.1", "Expect: 100-continue"),
        ("GET /x HTTP/1.1", "Host x"),  # no colon
        ("GET /x HTTP/1.1", "Host : x"),  # space before the colon
        ("GET /x HTTP/1.1", "Host: x", " folded"),  # obs-fold
        ("GET /x HTTP/1.1", ": empty-name"),
    ],
)
def test_anything_else_is_left_to_aiohttp(lines: tuple[str, ...]) -> None:
    assert parse_simple(head(*lines)) is None


def test_bare_line_feeds_or_carriage_returns_are_left_to_aiohttp() -> None:
    assert parse_simple(b"GET /x HTTP/1.1\r\nHost: x\nX-Smuggled: y") is None
    assert parse_simple(b"GET /x HTTP/1.1\r\nHost: x\rX: y") is None


def test_heads_that_may_carry_a_body_are_spotted() -> None:
    assert may_have_body(head("POST /admin/purge HTTP/1.1", "content-LENGTH: 10"))
    assert may_have_body(head("PUT /x HTTP/1.1", "Transfer-Encoding: chunked"))
    assert may_have_body(head("GET /x HTTP/1.1", "Connection: Upgrade", "Upgrade: h2c"))
    assert may_have_body(head("CONNECT x:443 HTTP/1.1"))
    assert not may_have_body(head("GET /x HTTP/1.0", "Host: x"))
    assert not may_have_body(head("DELETE /admin/titles/a HTTP/1.1", "Authorization: Bearer t"))


def test_render_head_replaces_content_length_and_leaves_room_for_more_lines() -> None:
    rendered = render_head(200, {"Content-Type": "video/mp4", "content-length": "999", "ETag": '"é"'}, 12)
    assert (
        rendered
        == 'HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nETag: "é"\r\nContent-Length: 12\r\n'.encode()
    )
    assert render_head(304, {}, None) == b"HTTP/1.1 304 Not Modified\r\n"


def test_date_line_is_an_imf_fixdate_per_second() -> None:
    assert date_line(1_795_600_000.2) == b"Date: Wed, 25 Nov 2026 09:46:40 GMT\r\n"
    assert date_line(1_795_600_000.9) == date_line(1_795_600_000.2)
    assert date_line(1_795_600_001.0) == b"Date: Wed, 25 Nov 2026 09:46:41 GMT\r\n"
