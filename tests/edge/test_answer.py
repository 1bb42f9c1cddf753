"""The edge's one decision per delivery request (edge.answer), as tables: no sockets, a fixed ``now``."""

from __future__ import annotations

import pytest

from edge.answer import (
    Decision,
    Hit,
    Miss,
    NotModified,
    Partial,
    RangeNotSatisfiable,
    Revalidate,
    Source,
    decide,
    per_answer_headers,
    per_answer_lines,
    reply,
    stale_on_error,
)
from edge.policy import freshness, updated_headers
from edge.render import front_answer
from edge.store import CachedObject
from service.facts import RequestFacts
from service.front import header_lines

DATE = "Wed, 25 Nov 2026 10:00:00 GMT"
T0 = 1_795_600_800.0  # DATE as a timestamp
KEY = "/titles/show-abc123/360p/seg_00000.m4s"
BODY = b"0123456789"
ETAG = '"v1"'


def stored(cache_control: str = "max-age=60", status: int = 200) -> CachedObject:
    headers = {"cache-control": cache_control, "etag": ETAG, "last-modified": DATE}
    original = {"Content-Type": "video/iso.segment", "Cache-Control": cache_control, "ETag": ETAG,
                "Last-Modified": DATE, "Access-Control-Allow-Origin": "*"}  # fmt: skip
    return CachedObject(KEY, status, original, BODY, freshness(headers, T0, T0))


def facts(method: str = "GET", **headers: str) -> RequestFacts:
    return RequestFacts(method, KEY, **headers)  # type: ignore[arg-type]


def shape(decision: Decision) -> tuple[object, ...]:
    """What a table row names: the type, its source, and a range's bounds."""
    match decision:
        case Partial(source=source, start=start, stop=stop):
            return (Partial, source, start, stop)
        case Hit(source=source) | NotModified(source=source) | RangeNotSatisfiable(source=source):
            return (type(decision), source)
        case Revalidate() | Miss():
            return (type(decision),)


FRESH, SWR, DOWN = Source.FRESH, Source.STALE_WHILE_REVALIDATE, Source.UPSTREAMS_DOWN


@pytest.mark.parametrize(
    ("cache_control", "request_facts", "age", "failing", "expected"),
    [
        ("max-age=60", facts(), 7, False, (Hit, FRESH)),
        ("max-age=60", facts("HEAD"), 7, False, (Hit, FRESH)),
        ("max-age=60", facts(if_none_match=ETAG), 7, False, (NotModified, FRESH)),
        ("max-age=60", facts(if_none_match='"v0", "v1"'), 7, False, (NotModified, FRESH)),
        ("max-age=60", facts(if_none_match="*"), 7, False, (NotModified, FRESH)),
        ("max-age=60", facts(if_modified_since=DATE), 7, False, (NotModified, FRESH)),
        ("max-age=60", facts(if_modified_since="Tue, 24 Nov 2026 10:00:00 GMT"), 7, False, (Hit, FRESH)),
        # RFC 9110 13.2.2: If-None-Match, when sent, decides alone.
        ("max-age=60", facts(if_none_match='"v0"', if_modified_since=DATE), 7, False, (Hit, FRESH)),
        ("max-age=60", facts(range="bytes=2-5"), 7, False, (Partial, FRESH, 2, 6)),
        ("max-age=60", facts(range="bytes=-3"), 7, False, (Partial, FRESH, 7, 10)),
        ("max-age=60", facts(range="bytes=8-"), 7, False, (Partial, FRESH, 8, 10)),
        ("max-age=60", facts(range="bytes=8-100"), 7, False, (Partial, FRESH, 8, 10)),
        ("max-age=60", facts(range="bytes=10-"), 7, False, (RangeNotSatisfiable, FRESH)),
        ("max-age=60", facts(range="bytes=-0"), 7, False, (RangeNotSatisfiable, FRESH)),
        ("max-age=60", facts(range="bytes=5-2"), 7, False, (Hit, FRESH)),  # invalid: ignored
        ("max-age=60", facts(range="bytes=0-1,4-5"), 7, False, (Hit, FRESH)),  # several: ignored
        ("max-age=60", facts(range="items=0-1"), 7, False, (Hit, FRESH)),
        ("max-age=60", facts(range="bytes=0-1", if_range=ETAG), 7, False, (Partial, FRESH, 0, 2)),
        ("max-age=60", facts(range="bytes=0-1", if_range=DATE), 7, False, (Partial, FRESH, 0, 2)),
        ("max-age=60", facts(range="bytes=0-1", if_range='"v0"'), 7, False, (Hit, FRESH)),
        ("max-age=60", facts(range="bytes=0-1", if_range=f"W/{ETAG}"), 7, False, (Hit, FRESH)),
        # A 304 wins over a Range (RFC 9110 13.2.2 evaluates preconditions first).
        ("max-age=60", facts(range="bytes=0-1", if_none_match=ETAG), 7, False, (NotModified, FRESH)),
        ("max-age=60", facts(), 61, False, (Revalidate,)),
        ("max-age=60, stale-while-revalidate=30", facts(), 61, False, (Hit, SWR)),
        ("max-age=60, stale-while-revalidate=30", facts(range="bytes=0-0"), 61, False, (Partial, SWR, 0, 1)),
        ("max-age=60, stale-while-revalidate=30", facts(), 91, False, (Revalidate,)),
        ("max-age=60, must-revalidate, stale-while-revalidate=30", facts(), 61, False, (Revalidate,)),
        ("no-cache", facts(), 1, False, (Revalidate,)),
        # Every upstream failing: a stale object stands in at once (RFC 5861 4, and the edge's grace).
        ("max-age=60", facts(), 61, True, (Hit, DOWN)),
        ("max-age=60", facts(if_none_match=ETAG), 61, True, (NotModified, DOWN)),
        ("max-age=60", facts(), 60 + 86_400, True, (Revalidate,)),  # past the grace
        ("max-age=60, must-revalidate", facts(), 61, True, (Revalidate,)),
        ("max-age=60", facts(), 7, True, (Hit, FRESH)),  # fresh is fresh, whatever upstreams do
    ],
)
def test_decide(
    cache_control: str, request_facts: RequestFacts, age: float, failing: bool, expected: tuple[object, ...]
) -> None:
    obj = stored(cache_control)
    found = (obj, obj.body)
    decision = decide(KEY, found, request_facts, T0 + age, upstreams_failing=failing, stale_grace=86_400)
    assert shape(decision) == expected
    assert decision.key == KEY


def test_nothing_stored_is_a_miss_and_a_stored_error_status_is_replayed_whole() -> None:
    assert decide(KEY, None, facts(), T0, upstreams_failing=False, stale_grace=0) == Miss(KEY)
    gone = stored(status=410)
    decision = decide(KEY, (gone, gone.body), facts(range="bytes=0-1", if_none_match=ETAG), T0,
                      upstreams_failing=False, stale_grace=0)  # fmt: skip
    assert shape(decision) == (Hit, FRESH)


def test_stale_on_error_after_a_failed_revalidation() -> None:
    obj = stored("max-age=60, stale-if-error=100")
    found = (obj, obj.body)
    stand_in = stale_on_error(KEY, found, facts(), T0 + 150, stale_grace=0)
    assert stand_in is not None and shape(stand_in) == (Hit, Source.STALE_IF_ERROR)
    assert not stand_in.source.refresh and stand_in.source.on_error  # no second fill right behind it
    assert stale_on_error(KEY, found, facts(), T0 + 161, stale_grace=0) is None
    assert stale_on_error(KEY, found, facts(), T0 + 161, stale_grace=3600) is not None


@pytest.mark.parametrize(
    ("request_facts", "status", "body", "length", "extra"),
    [
        (facts(), 200, BODY, 10, {}),
        (facts("HEAD"), 200, b"", 10, {}),
        (facts(if_none_match=ETAG), 304, b"", None, {}),
        (facts(range="bytes=2-5"), 206, b"2345", 4, {"Content-Range": "bytes 2-5/10"}),
        (facts("HEAD", range="bytes=2-5"), 206, b"", 4, {"Content-Range": "bytes 2-5/10"}),
        (facts(range="bytes=10-"), 416, b"", 0, {"Content-Range": "bytes */10"}),
    ],
)
def test_reply_headers_come_from_one_place(
    request_facts: RequestFacts, status: int, body: bytes, length: int | None, extra: dict[str, str]
) -> None:
    obj = stored()
    decision = decide(KEY, (obj, obj.body), request_facts, T0 + 7.9, upstreams_failing=False, stale_grace=0)
    assert isinstance(decision, Hit | NotModified | Partial | RangeNotSatisfiable)
    rendered = reply(decision, request_facts.method, T0 + 7.9, "1.1 e1", "e1")
    assert (rendered.status, bytes(rendered.body), rendered.content_length) == (status, body, length)
    expected = {
        "Content-Type": "video/iso.segment", "Cache-Control": "max-age=60", "ETag": ETAG,
        "Last-Modified": DATE, "Access-Control-Allow-Origin": "*", "Via": "1.1 e1", "X-Served-By": "e1",
        "Accept-Ranges": "bytes", "Age": "7", "X-Cache": "HIT",
        "Date": "Wed, 25 Nov 2026 10:00:07 GMT",  # RFC 9110 6.6.1, from the edge's clock
    } | extra  # fmt: skip
    assert rendered.headers == expected
    # The front renders the same values as bytes.
    answer = front_answer(decision, request_facts.method, T0 + 7.9, "1.1 e1", "e1")
    lines = answer.head.decode().split("\r\n")
    assert lines[0].split(" ")[1] == str(status) and lines[-2:] == ["", ""]
    sent = dict(line.split(": ", 1) for line in lines[1:-2])
    assert sent == expected | ({"Content-Length": str(length)} if length is not None else {})
    assert (answer.status, bytes(answer.body)) == (status, body)


def test_a_stale_answer_says_so() -> None:
    obj = stored("max-age=60, stale-while-revalidate=30")
    decision = decide(KEY, (obj, obj.body), facts(), T0 + 70, upstreams_failing=False, stale_grace=0)
    assert isinstance(decision, Hit) and decision.source.refresh
    rendered = reply(decision, "GET", T0 + 70, "1.1 e1", "e1")
    assert (rendered.headers["X-Cache"], rendered.headers["Age"]) == ("STALE", "70")


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        ("", None, None),
        ("CMCD=nor%3D%22seg_1.m4s%22", None, 'nor="seg_1.m4s"'),
        ("", 'nor="seg_2.m4s"', 'nor="seg_2.m4s"'),
        ("CMCD=nor%3D%22seg_1.m4s%22", 'nor="seg_2.m4s"', 'nor="seg_1.m4s"'),  # one order, both paths
        ("other=1", 'nor="seg_2.m4s"', 'nor="seg_2.m4s"'),
    ],
)
def test_cmcd_is_read_one_way(query: str, header: str | None, expected: str | None) -> None:
    assert RequestFacts("GET", KEY, query, cmcd_request=header).cmcd == expected


def test_a_304_updates_the_stored_headers_except_those_describing_the_body() -> None:
    # RFC 9111 3.2 and 4.3.4
    old = {"Content-Type": "video/mp4", "Content-Length": "10", "Cache-Control": "max-age=60", "ETag": ETAG}
    new = {"cache-control": "max-age=120", "Content-Type": "text/plain", "content-length": "0", "X-New": "1"}
    assert updated_headers(old, new) == {
        "Content-Type": "video/mp4", "Content-Length": "10", "ETag": ETAG, "cache-control": "max-age=120",
        "X-New": "1",
    }  # fmt: skip


@pytest.mark.parametrize(("age", "x_cache"), [(0, "HIT"), (7.9, "STALE"), (86_400, "MISS")])
def test_per_answer_lines_are_the_per_answer_headers(age: float, x_cache: str) -> None:
    assert per_answer_lines(age, x_cache, T0 + 0.5) == header_lines(
        per_answer_headers(age, x_cache, T0 + 0.5)
    )
