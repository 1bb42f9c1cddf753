"""Conditional requests (RFC 9110 13) as pure functions of header values: dates, entity-tag comparisons."""

from __future__ import annotations

import email.utils


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """RFC 9110 13.1.2 weak comparison, as If-None-Match requires."""
    if etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == ours for candidate in if_none_match.split(","))


def not_modified_since(if_modified_since: str, last_modified: str | None) -> bool:
    since, modified = parse_http_date(if_modified_since), parse_http_date(last_modified)
    return since is not None and modified is not None and modified <= since


def if_match_holds(if_match: str, etag: str | None) -> bool:
    """RFC 9110 13.1.1: a strong comparison with any listed tag, or ``*``."""
    if etag is None or etag.startswith("W/"):
        return if_match.strip() == "*" and etag is not None
    return if_match.strip() == "*" or any(tag.strip() == etag for tag in if_match.split(","))


def unmodified_since(if_unmodified_since: str, last_modified: str | None) -> bool:
    """RFC 9110 13.1.4: true (the condition holds) unless the date is valid and the representation was
    modified after it."""
    since, modified = parse_http_date(if_unmodified_since), parse_http_date(last_modified)
    return since is None or modified is None or modified <= since
