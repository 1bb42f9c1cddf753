"""The edge's Prometheus families beyond the per-route ones: requests and bytes by cache status, upstream
fetches and fill errors, and request and byte rates of the hottest titles.

Counts are plain numbers turned into metric families when scraped (as ``service.http.RequestMetrics``
does, for the same reason: a hit costs microseconds). What status an answer counts under is decided once,
by ``cache_status``, from what the answer says (``X-Cache``) and whether its response may be stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.stats import WINDOWS, TitleRates

HOTTEST = 10  # titles with their own rate series; a label per title ever seen would grow without bound


class CacheStatus(StrEnum):
    HIT = "hit"  # fresh from cache (including 304 and 206 answered from it)
    MISS = "miss"  # filled from upstream, stored
    STALE = "stale"  # served stale (stale-while-revalidate, stale-if-error)
    PASS = "pass"  # from upstream and not storable (no-store, private, too large): passed through
    COALESCED = "coalesced"  # joined a fill already running for the same object
    ERROR = "error"  # the edge answered an error itself (no upstream answered, bad path)


def cache_status(x_cache: str | None, storable: bool) -> CacheStatus:
    """An answer's ``X-Cache`` (``None``: the edge's own error) and whether its response may be stored."""
    match (x_cache or "").upper():
        case "HIT":
            return CacheStatus.HIT
        case "STALE":
            return CacheStatus.STALE
        case "COALESCED":
            return CacheStatus.COALESCED
        case "MISS":
            return CacheStatus.MISS if storable else CacheStatus.PASS
        case _:
            return CacheStatus.ERROR


def hottest(rates: Mapping[str, TitleRates], count: int = HOTTEST) -> list[str]:
    """The ``count`` titles with the most requests over 10 s (then 60 s), ties by name."""
    ranked = sorted(rates, key=lambda t: (-rates[t].rps_10s, -rates[t].rps_60s, t))
    return ranked[:count]


class UpstreamCounts(Protocol):
    # Read-only: a Mapping attribute would have to be one, not a dict (attributes are invariant).
    @property
    def fetches(self) -> Mapping[str, int]: ...  # "origin" / "parent" -> answered fetches
    @property
    def errors(self) -> Mapping[str, int]: ...  # failed attempts (network error, timeout, 5xx), same kinds
    @property
    def fill_errors(self) -> int: ...  # fills that failed: no upstream answered, or the body broke off


class EdgeMetrics(Collector):
    def __init__(
        self,
        registry: CollectorRegistry,
        upstreams: UpstreamCounts,
        title_rates: Callable[[], Mapping[str, TitleRates]],
    ) -> None:
        self.upstreams = upstreams
        self.title_rates = title_rates
        self.requests = dict.fromkeys(CacheStatus, 0)
        self.bytes = dict.fromkeys(CacheStatus, 0)
        self.created = time.time()
        registry.register(self)

    def observe(self, status: CacheStatus, size: int) -> None:
        self.requests[status] += 1
        self.bytes[status] += size

    def describe(self) -> list[Metric]:
        return list(self._families(with_samples=False))

    def collect(self) -> list[Metric]:
        return list(self._families(with_samples=True))

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "surge_edge_cache_requests", "Delivery requests by cache status", labels=["cache"]
        )
        sent = CounterMetricFamily(
            "surge_edge_cache_response_bytes", "Delivery body bytes by cache status", labels=["cache"]
        )
        fetches = CounterMetricFamily(
            "surge_edge_upstream_fetches", "Upstream answers, by origin or parent edge", labels=["upstream"]
        )
        errors = CounterMetricFamily(
            "surge_edge_upstream_errors",
            "Failed upstream attempts (then the next is tried)",
            labels=["upstream"],
        )
        fill_errors = CounterMetricFamily("surge_edge_fill_errors", "Fills that failed (no object cached)")
        title_requests = GaugeMetricFamily(
            "surge_edge_title_requests_per_second",
            "Requests/s of the hottest titles",
            labels=["title", "window"],
        )
        title_bytes = GaugeMetricFamily(
            "surge_edge_title_bytes_per_second", "Bytes/s of the hottest titles", labels=["title", "window"]
        )
        if with_samples:
            for status in CacheStatus:
                requests.add_metric([status.value], self.requests[status], created=self.created)
                sent.add_metric([status.value], self.bytes[status], created=self.created)
            for kind in ("origin", "parent"):
                fetches.add_metric([kind], self.upstreams.fetches.get(kind, 0), created=self.created)
                errors.add_metric([kind], self.upstreams.errors.get(kind, 0), created=self.created)
            fill_errors.add_metric([], self.upstreams.fill_errors, created=self.created)
            rates = self.title_rates()
            for title in hottest(rates):
                for window in WINDOWS:
                    title_requests.add_metric([title, f"{window}s"], getattr(rates[title], f"rps_{window}s"))
                    title_bytes.add_metric(
                        [title, f"{window}s"], getattr(rates[title], f"bytes_per_s_{window}s")
                    )
        yield from (requests, sent, fetches, errors, fill_errors, title_requests, title_bytes)
