"""The origin's one decision per request for a published file (origin.answer), as tables: no sockets,
no files, a fixed ``now``."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.answer import (
    Decision,
    Hit,
    NotModified,
    Partial,
    PreconditionFailed,
    Published,
    RangeNotSatisfiable,
    Reject,
    Representation,
    decide,
    reply,
)
from service.facts import RequestFacts

DATE = "Wed, 25 Nov 2026 10:00:00 GMT"
T0 = 1_795_600_800.0  # DATE as a timestamp
BODY = b"#EXTM3U\n" + b"x" * 92  # 100 bytes
PLAIN = Representation(Path("index.m3u8"), 100, '"p-64"', DATE, BODY)
GZIPPED = Representation(Path("index.m3u8.gz"), 40, '"g-28"', DATE, b"g" * 40, gzipped=True)
HEADERS = {"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "public, max-age=2",
           "Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*"}  # fmt: skip
PLAYLIST = Published(HEADERS, PLAIN, GZIPPED)
EARLIER, LATER = "Tue, 24 Nov 2026 10:00:00 GMT", "Thu, 26 Nov 2026 10:00:00 GMT"


def facts(method: str = "GET", **headers: str) -> RequestFacts:
    return RequestFacts(method, "/titles/show-abc123/360p/index.m3u8", **headers)  # type: ignore[arg-type]


def shape(decision: Decision) -> tuple[object, ...]:
    match decision:
        case Partial(chosen=chosen, start=start, stop=stop):
            return (Partial, chosen.gzipped, start, stop)
        case Hit(chosen=chosen) | NotModified(chosen=chosen):
            return (type(decision), chosen.gzipped)
        case Reject(error=error):
            return (Reject, error.status)


@pytest.mark.parametrize(
    ("request_facts", "expected"),
    [
        (facts(), (Hit, False)),
        (facts("HEAD"), (Hit, False)),
        (facts(accept_encoding="gzip, deflate"), (Hit, True)),
        (facts(accept_encoding="identity"), (Hit, False)),
        (facts(if_none_match='"p-64"'), (NotModified, False)),
        (facts(if_none_match='W/"p-64"'), (NotModified, False)),  # weak comparison (13.1.2)
        (facts(if_none_match='"p-64"', accept_encoding="gzip"), (Hit, True)),  # another representation
        (facts(if_none_match='"g-28"', accept_encoding="gzip"), (NotModified, True)),
        (facts(if_modified_since=DATE), (NotModified, False)),
        (facts(if_modified_since=EARLIER), (Hit, False)),
        (facts(if_none_match='"x"', if_modified_since=DATE), (Hit, False)),  # If-None-Match decides alone
        (facts(if_match='"p-64"'), (Hit, False)),
        (facts(if_match="*"), (Hit, False)),
        (facts(if_match='"x"'), (Reject, 412)),
        (facts(if_match='W/"p-64"'), (Reject, 412)),  # strong comparison (13.1.1)
        (facts(if_unmodified_since=LATER), (Hit, False)),
        (facts(if_unmodified_since=EARLIER), (Reject, 412)),
        (facts(if_unmodified_since="not a date"), (Hit, False)),
        (facts(if_match='"p-64"', if_unmodified_since=EARLIER), (Hit, False)),  # If-Match decides alone
        (facts(range="bytes=0-9"), (Partial, False, 0, 10)),
        (facts(range="bytes=-10"), (Partial, False, 90, 100)),
        (facts(range="bytes=95-"), (Partial, False, 95, 100)),
        (facts(range="bytes=0-9", accept_encoding="gzip"), (Partial, True, 0, 10)),
        (facts(range="bytes=100-"), (Reject, 416)),
        (facts(range="bytes=-0"), (Reject, 416)),
        (facts(range="bytes=9-0"), (Hit, False)),
        (facts(range="bytes=0-1,5-6"), (Hit, False)),
        (facts(range="bytes=0-9", if_range='"p-64"'), (Partial, False, 0, 10)),
        (facts(range="bytes=0-9", if_range=DATE), (Partial, False, 0, 10)),
        (facts(range="bytes=0-9", if_range='"x"'), (Hit, False)),
        (facts(range="bytes=0-9", if_range=EARLIER), (Hit, False)),
        (facts(range="bytes=0-9", if_none_match='"p-64"'), (NotModified, False)),
    ],
)
def test_decide(request_facts: RequestFacts, expected: tuple[object, ...]) -> None:
    assert shape(decide(PLAYLIST, request_facts)) == expected


def test_errors_carry_their_own_headers() -> None:
    decision = decide(PLAYLIST, facts(range="bytes=200-"))
    assert isinstance(decision, Reject) and isinstance(decision.error, RangeNotSatisfiable)
    assert decision.error.headers == {"Access-Control-Allow-Origin": "*", "Content-Range": "bytes */100"}
    refused = decide(PLAYLIST, facts(if_match='"x"'))
    assert isinstance(refused, Reject) and isinstance(refused.error, PreconditionFailed)


@pytest.mark.parametrize(
    ("request_facts", "status", "length", "span", "extra"),
    [
        (facts(), 200, 100, (0, 100), {}),
        (facts("HEAD"), 200, 100, (0, 0), {}),
        (facts(accept_encoding="gzip"), 200, 40, (0, 40), {"Content-Encoding": "gzip", "ETag": '"g-28"'}),
        (facts(if_none_match='"p-64"'), 304, None, (0, 0), {}),
        (facts(range="bytes=10-19"), 206, 10, (10, 20), {"Content-Range": "bytes 10-19/100"}),
        (facts("HEAD", range="bytes=10-19"), 206, 10, (10, 10), {"Content-Range": "bytes 10-19/100"}),
    ],
)
def test_reply(
    request_facts: RequestFacts,
    status: int,
    length: int | None,
    span: tuple[int, int],
    extra: dict[str, str],
) -> None:
    decision = decide(PLAYLIST, request_facts)
    assert isinstance(decision, Hit | NotModified | Partial)
    rendered = reply(decision, request_facts.method, T0 + 7.5)
    assert (rendered.status, rendered.content_length) == (status, length)
    assert (rendered.start, rendered.stop) == span
    assert rendered.headers == HEADERS | {
        "ETag": '"p-64"', "Last-Modified": DATE, "Accept-Ranges": "bytes",
        "Date": "Wed, 25 Nov 2026 10:00:07 GMT",
    } | extra  # fmt: skip
