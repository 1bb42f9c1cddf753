"""Range requests (RFC 9110 14) as pure functions of header values and the representation's size and
validators: which part of a body to send, and whether ``If-Range`` lets a range through at all."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Whole:
    """Send the whole representation, 200 (no range asked, an unusable one, or If-Range failed)."""


@dataclass(frozen=True)
class Part:
    """Send ``[start, stop)``, 206."""

    start: int
    stop: int


@dataclass(frozen=True)
class Unsatisfiable:
    """416 with ``Content-Range: bytes */size``."""


RangeAnswer = Whole | Part | Unsatisfiable

_ONE_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)


def if_range_holds(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 13.1.5: a range is served only if ``If-Range`` (when sent) still names this
    representation: a strong comparison with its entity tag, or exactly its Last-Modified date."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified


def byte_range(range_header: str, size: int) -> RangeAnswer:
    """RFC 9110 14.1.2: one ``bytes=first-last``, ``bytes=first-`` or ``bytes=-suffix`` range of a body of
    ``size`` bytes. Anything else (other units, several ranges, nonsense) is ignored (14.2): Whole."""
    match = _ONE_RANGE.fullmatch(range_header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return Whole()
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        # 14.1.1: a suffix range needs a non-zero length to be satisfiable.
        return Part(max(0, size - suffix), size) if suffix > 0 and size > 0 else Unsatisfiable()
    start = int(first)
    stop = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return Whole()  # invalid (14.1.1): ignored
    return Part(start, stop) if start < size else Unsatisfiable()
