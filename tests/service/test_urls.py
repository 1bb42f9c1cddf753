"""Bound addresses versus advertised URLs (service/urls.py)."""

from __future__ import annotations

import pytest

from media.errors import InvalidInput
from service.urls import advertised_url, is_loopback_url, validate_base_url


@pytest.mark.parametrize(
    ("host", "options", "expected"),
    [
        ("127.0.0.1", {}, "http://127.0.0.1:8080"),
        ("198.51.100.7", {}, "http://198.51.100.7:8080"),
        ("0.0.0.0", {}, "http://media-1:8080"),  # a wildcard bind advertises the machine's name
        ("::", {}, "http://media-1:8080"),
        ("", {}, "http://media-1:8080"),
        ("2001:db8::5", {}, "http://[2001:db8::5]:8080"),
        ("0.0.0.0", {"public_host": "cdn.example.org"}, "http://cdn.example.org:8080"),
        ("127.0.0.1", {"public_host": "198.51.100.9"}, "http://198.51.100.9:8080"),
        ("0.0.0.0", {"advertise_url": "https://edge.example.org/"}, "https://edge.example.org"),
        ("0.0.0.0", {"advertise_url": "http://a:1", "public_host": "b"}, "http://a:1"),
        ("198.51.100.7", {"scheme": "https"}, "https://198.51.100.7:8080"),
    ],
)
def test_advertised_url(host: str, options: dict[str, str], expected: str) -> None:
    assert advertised_url(host, 8080, hostname="media-1", **options) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.9.9.9", True),
        ("http://localhost:80/x", True),
        ("http://a.localhost:80", True),
        ("http://[::1]:8000", True),
        ("http://198.51.100.1:8080", False),
        ("http://media-1:8080", False),
        ("http://[2001:db8::1]:80", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_base_urls_are_validated() -> None:
    assert validate_base_url("http://198.51.100.1:8080/", "--origin") == "http://198.51.100.1:8080"
    for bad in ("198.51.100.1:8080", "ftp://x", "http://", "http://x:99999", "http://x/?a=1", "http://x/#f"):
        with pytest.raises(InvalidInput, match="--origin"):
            validate_base_url(bad, "--origin")
