"""Bound addresses and advertised URLs: what a server listens on versus what others use to reach it.

Pure. A server bound to a concrete address advertises that address; one bound to every address
(``0.0.0.0``, ``::``) advertises the machine's host name unless told a public host or a whole URL.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from media.errors import InvalidInput

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def url_host(host: str) -> str:
    """``host`` as it stands in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def advertised_url(
    bound_host: str,
    bound_port: int,
    *,
    hostname: str,
    scheme: str = "http",
    advertise_url: str | None = None,
    public_host: str | None = None,
) -> str:
    """The URL players and sibling servers use: ``advertise_url`` as given, else ``public_host`` or the
    bound address (``hostname`` for a wildcard bind) with the bound port."""
    if advertise_url:
        return advertise_url.rstrip("/")
    host = public_host or (hostname if bound_host in WILDCARD_HOSTS else bound_host)
    return f"{scheme}://{url_host(host)}:{bound_port}"


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def validate_base_url(url: str, option: str) -> str:
    """A base URL given on the command line (``http(s)://host[:port][/prefix]``), without its final /."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidInput(f"invalid {option} {url!r}: expected http://host:port")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidInput(f"invalid {option} {url!r}: bad port") from None
    return url.rstrip("/")
