"""Content Steering: the manifest, its clones and the choice of pathway, as tables."""

from __future__ import annotations

import pytest

from loadtest.steering import (
    InvalidSteering,
    PathwayClone,
    SteeringManifest,
    choose_pathway,
    parse_manifest,
    steering_request_url,
)


def test_manifest() -> None:
    text = '{"VERSION": 1, "TTL": 10, "RELOAD-URI": "next", "PATHWAY-PRIORITY": ["cdn-b", "cdn-a"]}'
    assert parse_manifest(text) == SteeringManifest(10.0, ("cdn-b", "cdn-a"), "next")
    assert parse_manifest('{"VERSION": 1, "PATHWAY-PRIORITY": ["x"]}').ttl == 300.0


def test_manifest_clones() -> None:
    text = """{"VERSION": 1, "PATHWAY-PRIORITY": ["edge-3", "edge-1"], "PATHWAY-CLONES": [
        {"BASE-ID": "edge-1", "ID": "edge-3",
         "URI-REPLACEMENT": {"HOST": "127.0.0.1:8103", "PARAMS": {"k": 1}}}
    ]}"""
    assert parse_manifest(text).clones == (PathwayClone("edge-1", "edge-3", "127.0.0.1:8103", (("k", "1"),)),)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"VERSION": 2, "PATHWAY-PRIORITY": ["a"]}',
        '{"VERSION": 1}',
        '{"VERSION": 1, "PATHWAY-PRIORITY": []}',
        '{"VERSION": 1, "PATHWAY-PRIORITY": [1]}',
        '{"VERSION": 1, "TTL": 0, "PATHWAY-PRIORITY": ["a"]}',
        '{"VERSION": 1, "TTL": true, "PATHWAY-PRIORITY": ["a"]}',
        '{"VERSION": 1, "PATHWAY-PRIORITY": ["a"], "PATHWAY-CLONES": {}}',
        '{"VERSION": 1, "PATHWAY-PRIORITY": ["a"], "PATHWAY-CLONES": [{"ID": "b"}]}',
        '{"VERSION": 1, "PATHWAY-PRIORITY": ["a"], "PATHWAY-CLONES": [{"BASE-ID": "a", "ID": "b", '
        '"URI-REPLACEMENT": {"HOST": 7}}]}',
    ],
)
def test_bad_manifests(text: str) -> None:
    with pytest.raises(InvalidSteering):
        parse_manifest(text)


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(["cdn-b", "cdn-a"], "cdn-b"), (["gone", "cdn-a"], "cdn-a"), (["gone"], "cdn-b"), ([], "cdn-b")],
)
def test_choose_pathway(priority: list[str], expected: str) -> None:
    assert choose_pathway(priority, {"cdn-a", "cdn-b"}, current="cdn-b") == expected


def test_request_url_carries_the_client_state() -> None:
    assert steering_request_url("http://h/s", "cdn a", 2_500_000.7) == (
        "http://h/s?_HLS_pathway=cdn%20a&_HLS_throughput=2500000"
    )
    assert steering_request_url("http://h/s?x=1", ".", None) == "http://h/s?x=1&_HLS_pathway=."
