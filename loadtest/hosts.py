"""Which hosts a load test may hit: loopback only, unless the user says otherwise (``--allow-remote``).

Every URL a player is about to follow — the master, redirects, steering, variants, segments — passes
here first; answers are cached per host, so the check costs a dict lookup after the first time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from yarl import URL

from media.errors import InvalidInput


class RemoteRefused(InvalidInput):
    """A URL on a host that is not this machine, without ``--allow-remote``."""


def literal_is_loopback(host: str) -> bool | None:
    """True/False for IP literals and ``localhost`` names; None when only DNS can tell."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return None


class HostGuard:
    def __init__(self, allow_remote: bool = False) -> None:
        self.allow_remote = allow_remote
        self._known: dict[str, bool] = {}

    async def check(self, url: str) -> None:
        await self.check_hosts([URL(url).host or ""])

    async def check_hosts(self, hosts: Iterable[str]) -> None:
        if self.allow_remote:
            return
        for host in hosts:
            local = self._known.get(host)
            if local is None:
                local = self._known[host] = await _is_local(host)
            if not local:
                raise RemoteRefused(
                    f"refusing to load-test {host or 'a URL without a host'}: not a loopback address "
                    "(pass --allow-remote for a server you may load)"
                )


async def _is_local(host: str) -> bool:
    if not host:
        return False
    literal = literal_is_loopback(host)
    if literal is not None:
        return literal
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(literal_is_loopback(str(address)) for address in addresses)
