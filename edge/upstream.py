"""Fetching from upstreams (origins, or a parent edge): pooled keep-alive connections, bounded timeouts,
retry on the next upstream, and a circuit breaker that skips a dead upstream for a while."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from edge.singleflight import UpstreamFailed, UpstreamTimeout
from service.logs import log

logger = logging.getLogger("surge.edge")

# Hop-by-hop fields (RFC 9110 7.6.1) and the ones the edge recomputes itself.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "via",
        "x-cache",
        "x-served-by",
        "age",
    }
)


@dataclass
class Breaker:
    """Closed until ``threshold`` failures in a row; then open (skipped) for ``cooldown`` seconds,
    after which one request may try again (half-open). Pure: callers pass ``now``."""

    threshold: int = 3
    cooldown: float = 5.0
    failures: int = 0
    open_until: float = 0.0

    def available(self, now: float) -> bool:
        return self.failures < self.threshold or now >= self.open_until

    @property
    def failing(self) -> bool:
        """Tripped, and not yet answered since."""
        return self.failures >= self.threshold

    def succeeded(self) -> bool:
        """True when this success ends a failing spell."""
        recovered = self.failing
        self.failures = 0
        self.open_until = 0.0
        return recovered

    def failed(self, now: float) -> bool:
        """True when this failure starts a failing spell."""
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown
        return self.failures == self.threshold


def upstream_order(
    upstreams: list[str], breakers: dict[str, Breaker], now: float, start: int, parent: str | None = None
) -> list[str]:
    """Who to try, in order: the parent edge first when there is one (a shield tier), then the origins
    round-robin from ``start``; tripped upstreams go last, as a last resort (better a slow try than a
    certain failure)."""
    rotated = upstreams[start % len(upstreams) :] + upstreams[: start % len(upstreams)] if upstreams else []
    candidates = ([parent] if parent else []) + rotated
    available = [u for u in candidates if breakers[u].available(now)]
    return available + [u for u in candidates if u not in available]


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # end-to-end headers, original case
    content: aiohttp.StreamReader
    upstream: str


@dataclass
class Upstreams:
    urls: list[str]
    parent: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    connections: int = 256
    breakers: dict[str, Breaker] = field(default_factory=dict)
    # For /metrics, by kind of upstream ("origin" or "parent"): answers, failed attempts; failed fills.
    fetches: dict[str, int] = field(default_factory=lambda: {"origin": 0, "parent": 0})
    errors: dict[str, int] = field(default_factory=lambda: {"origin": 0, "parent": 0})
    errors_by_url: collections.Counter[str] = field(default_factory=collections.Counter)
    fill_errors: int = 0
    clock: Callable[[], float] = time.monotonic  # dates the circuit breakers' cooldowns
    _session: aiohttp.ClientSession | None = None
    _next: int = 0

    def __post_init__(self) -> None:
        self.urls = [u.rstrip("/") for u in self.urls]
        self.parent = self.parent.rstrip("/") if self.parent else None
        for url in [*self.urls, *([self.parent] if self.parent else [])]:
            self.breakers.setdefault(url, Breaker())

    def all_failing(self) -> bool:
        """Every upstream is tripped: waiting for one to answer is likely to be in vain."""
        return all(breaker.failing for breaker in self.breakers.values())

    def _kind(self, url: str) -> str:
        return "parent" if url == self.parent else "origin"

    def _failed(self, url: str, error: str) -> None:
        self.errors_by_url[url] += 1
        self.errors[self._kind(url)] += 1
        if self.breakers[url].failed(self.clock()):
            log(logger, "upstream failing", logging.WARNING, upstream=url, error=error)

    def _succeeded(self, url: str) -> None:
        if self.breakers[url].succeeded():
            log(logger, "upstream recovered", upstream=url)

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
        )
        # auto_decompress off: bytes are cached and replayed exactly as the upstream sent them.
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def fetch(self, path: str, headers: dict[str, str]) -> AsyncIterator[UpstreamResponse]:
        """GET ``path`` from the first upstream that answers; 5xx and network errors move to the next."""
        if self._session is None:
            raise RuntimeError("upstreams are not open")
        self._next += 1
        errors = []
        timed_out = False
        for url in upstream_order(self.urls, self.breakers, self.clock(), self._next, self.parent):
            try:
                response = await self._session.get(url + path, headers=headers, allow_redirects=False)
            except TimeoutError:
                errors.append(f"{url}: timed out")
                self._failed(url, "timed out")
                timed_out = True
                continue
            except aiohttp.ClientError as err:
                errors.append(f"{url}: {err.__class__.__name__}")
                self._failed(url, err.__class__.__name__)
                continue
            if response.status >= 500:
                errors.append(f"{url}: {response.status}")
                self._failed(url, f"status {response.status}")
                response.release()
                continue
            self._succeeded(url)
            self.fetches[self._kind(url)] += 1
            try:
                yield UpstreamResponse(
                    status=response.status,
                    headers={k: v for k, v in response.headers.items() if k.lower() not in DROPPED_HEADERS},
                    content=response.content,
                    upstream=url,
                )
            except (aiohttp.ClientError, TimeoutError):
                self.fill_errors += 1  # the body broke off
                raise
            finally:
                response.release()
            return
        self.fill_errors += 1
        message = "no upstream answered: " + "; ".join(errors)
        raise UpstreamTimeout(message) if timed_out else UpstreamFailed(message)

    async def reachable(self, limit: float) -> dict[str, str | None]:
        """Per upstream (parent first): None when it answers ``GET /healthz`` with anything below 500 within
        ``limit`` seconds (a plain HTTP origin without /healthz answers 404: reachable), else why not."""
        if self._session is None:
            raise RuntimeError("upstreams are not open")
        session = self._session
        urls = [*([self.parent] if self.parent else []), *self.urls]

        async def probe(url: str) -> str | None:
            try:
                async with session.get(
                    url + "/healthz", timeout=aiohttp.ClientTimeout(total=limit), allow_redirects=False
                ) as response:
                    return None if response.status < 500 else f"answered {response.status}"
            except TimeoutError:
                return f"no answer within {limit:g} s"
            except aiohttp.ClientError as err:
                return f"unreachable: {err.__class__.__name__}"

        return dict(zip(urls, await asyncio.gather(*(probe(url) for url in urls)), strict=True))
