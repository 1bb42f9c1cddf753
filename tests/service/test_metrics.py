"""RequestMetrics keeps plain counts; its exposition must match prometheus_client's own metrics."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.http import LATENCY_BUCKETS, RequestMetrics

OBSERVATIONS = [
    ("/titles/{title_id}/{rendition}/{file}", "GET", 200, 1_500_000, 0.0042),
    ("/titles/{title_id}/{rendition}/{file}", "GET", 200, 1_500_000, 0.005),  # on a bucket bound
    ("/titles/{title_id}/{rendition}/{file}", "HEAD", 304, 0, 0.0001),
    ("/titles/{title_id}/master.m3u8", "GET", 200, 812, 0.0009),
    ("/healthz", "GET", 200, 15, 45.0),  # beyond the last bucket
]


def without_created(text: str) -> str:
    return re.sub(r"^(\S+_created\{.*\}) \S+$", r"\1 T", text, flags=re.MULTILINE)


def test_same_exposition_as_prometheus_client_metrics() -> None:
    ours = CollectorRegistry()
    metrics = RequestMetrics(ours, "surge_edge")
    reference = CollectorRegistry()
    requests = Counter("surge_edge_requests_total", "HTTP requests", ["route", "method", "status"],
                       registry=reference)  # fmt: skip
    sent = Counter("surge_edge_response_bytes_total", "Response body bytes", ["route"], registry=reference)
    latency = Histogram("surge_edge_request_seconds", "Time to the end of the response", ["route"],
                        registry=reference, buckets=LATENCY_BUCKETS)  # fmt: skip
    for route, method, status, size, seconds in OBSERVATIONS:
        metrics.observe(route, method, status, size, seconds)
        requests.labels(route, method, str(status)).inc()
        sent.labels(route).inc(size)
        latency.labels(route).observe(seconds)
    expected = without_created(generate_latest(reference).decode())
    assert without_created(generate_latest(ours).decode()) == expected
    segments = 'route="/titles/{title_id}/{rendition}/{file}"'
    assert f'surge_edge_request_seconds_bucket{{le="0.005",{segments}}} 3.0' in expected


def test_created_is_when_a_series_first_appeared() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "x")
    metrics.observe("/a", "GET", 200, 1, 0.001)
    first = generate_latest(registry).decode()
    metrics.observe("/a", "GET", 200, 1, 0.001)
    second = generate_latest(registry).decode()
    created = [line for line in first.splitlines() if "_created{" in line]
    assert len(created) == 3 and all(line in second for line in created)
    assert 'x_requests_total{method="GET",route="/a",status="200"} 2.0' in second


def test_registering_twice_under_one_prefix_is_refused() -> None:
    registry = CollectorRegistry()
    RequestMetrics(registry, "x")
    try:
        RequestMetrics(registry, "x")
    except ValueError as err:
        assert "Duplicated timeseries" in str(err)
    else:
        raise AssertionError("a second collector with the same names was accepted")
