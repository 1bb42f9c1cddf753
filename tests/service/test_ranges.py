"""Range and If-Range decisions (RFC 9110 13.1.5, 14.1), as tables."""

from __future__ import annotations

import pytest

from service.ranges import Part, RangeAnswer, Unsatisfiable, Whole, byte_range, if_range_holds

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", Part(0, 100)),
        ("bytes=100-", Part(100, SIZE)),
        ("bytes=990-2000", Part(990, SIZE)),
        ("bytes=-50", Part(950, SIZE)),
        ("bytes=-5000", Part(0, SIZE)),
        ("BYTES=1-1", Part(1, 2)),
        ("bytes=-0", Unsatisfiable()),  # was a 206 with the whole body
        ("bytes=1000-", Unsatisfiable()),
        ("bytes=5000-6000", Unsatisfiable()),
        ("bytes=0-9,20-29", Whole()),
        ("bytes=9-1", Whole()),
        ("bytes=-", Whole()),
        ("items=0-9", Whole()),
        ("nonsense", Whole()),
    ],
)
def test_byte_range(header: str, expected: RangeAnswer) -> None:
    assert byte_range(header, SIZE) == expected


def test_an_empty_body_has_no_satisfiable_range() -> None:
    assert byte_range("bytes=0-", 0) == Unsatisfiable()
    assert byte_range("bytes=-10", 0) == Unsatisfiable()


ETAG = '"5f1-3e8"'
DATE = "Wed, 25 Nov 2026 10:00:00 GMT"


@pytest.mark.parametrize(
    ("if_range", "etag", "last_modified", "holds"),
    [
        (None, ETAG, DATE, True),
        (ETAG, ETAG, DATE, True),
        ('"other"', ETAG, DATE, False),  # was a 206 of the new body
        (f"W/{ETAG}", ETAG, DATE, False),  # If-Range compares strongly
        (f"W/{ETAG}", f"W/{ETAG}", DATE, False),
        (ETAG, None, DATE, False),
        (DATE, ETAG, DATE, True),
        ("Thu, 26 Nov 2026 10:00:00 GMT", ETAG, DATE, False),
        (DATE, ETAG, None, False),
    ],
)
def test_if_range(if_range: str | None, etag: str | None, last_modified: str | None, holds: bool) -> None:
    assert if_range_holds(if_range, etag, last_modified) is holds
