"""Request facts read the same way from both request shapes, and the content-coding choice."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from service.facts import RequestFacts, accepts_gzip, facts_of_request, facts_of_simple
from service.front import SimpleRequest


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("gzip;q=0.5", True),
        ("*", True),
        ("*;q=0", False),
        ("br, *;q=0.1", True),
        ("*, gzip;q=0", False),  # named beats the wildcard
        ("gzip;q=nonsense", False),
    ],
)
def test_accepts_gzip(accept_encoding: str, expected: bool) -> None:
    assert accepts_gzip(accept_encoding) is expected


HEADERS = {
    "Range": "bytes=0-1",
    "If-Range": '"a"',
    "If-None-Match": '"b"',
    "If-Modified-Since": "Wed, 25 Nov 2026 10:00:00 GMT",
    "If-Match": '"c"',
    "If-Unmodified-Since": "Tue, 24 Nov 2026 10:00:00 GMT",
    "Accept-Encoding": "gzip",
    "CMCD-Request": "bl=2000",
}


@pytest.mark.parametrize("headers", [{}, {"Host": "x"}, HEADERS, {"Range": "bytes=5-"}])
def test_both_request_shapes_give_the_same_facts(headers: dict[str, str]) -> None:
    target = "/titles/show-abc123/360p/seg_00000.m4s?CMCD=br%3D800"
    simple = SimpleRequest(
        "GET", target.split("?")[0], target.split("?")[1],
        {k.lower().encode(): v.encode() for k, v in headers.items()}, "127.0.0.1",
    )  # fmt: skip
    request = make_mocked_request("GET", target, headers=CIMultiDict(headers))
    from_simple = facts_of_simple(simple)
    from_aiohttp = facts_of_request(request)._replace(peer="127.0.0.1")  # a mocked request has no peer
    assert from_simple == from_aiohttp
    assert isinstance(from_simple, RequestFacts) and from_simple.cmcd == "br=800"
