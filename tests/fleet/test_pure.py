"""Placement, scaling and steering decisions, without sockets or processes."""

from __future__ import annotations

import pytest

from edge.router.hashing import edges_needed, hash_order, place, place_one
from edge.router.scaler import (
    Capacity,
    Hold,
    Observation,
    ScaleIn,
    ScaleOut,
    ScalerConfig,
    ScalerMemory,
    decide,
    parse_capacity,
)
from edge.router.steering import EdgeRef, master_for_edges, session_priority, steering_manifest
from media.hls import AudioRendition, MasterPlaylist, Variant, parse_master, render_master

EDGES = [f"edge-{i}" for i in range(1, 6)]


def test_hash_order_is_stable_when_edges_come_and_go() -> None:
    order = hash_order("show-a", EDGES)
    assert sorted(order) == sorted(EDGES)
    without = hash_order("show-a", [e for e in EDGES if e != order[2]])
    assert without == [e for e in order if e != order[2]]  # others keep their relative order
    # Titles spread over edges.
    firsts = {hash_order(f"title-{i}", EDGES)[0] for i in range(100)}
    assert firsts == set(EDGES)


@pytest.mark.parametrize(
    ("demand", "capacity", "available", "needed"),
    [(0.0, 100, 5, 1), (50, 100, 5, 1), (150, 100, 5, 2), (1000, 100, 5, 5), (10, 0, 3, 3), (10, 100, 0, 0)],
)
def test_edges_needed(demand: float, capacity: float, available: int, needed: int) -> None:
    assert edges_needed(demand, capacity, available) == needed


def test_cold_titles_stay_on_one_edge_and_a_hot_title_spreads() -> None:
    demand = {"hot": 450.0} | {f"cold-{i}": 2.0 for i in range(20)}
    placement = place(demand, EDGES, capacity=100.0)
    assert len(placement["hot"]) == 5  # 450 req/s at 100 per edge
    assert all(len(placement[f"cold-{i}"]) == 1 for i in range(20))
    # Bounded load: no edge carries more than (1 + e) x the average.
    load = dict.fromkeys(EDGES, 0.0)
    for title, edges in placement.items():
        for edge in edges:
            load[edge] += demand[title] / len(edges)
    average = sum(demand.values()) / len(EDGES)
    assert max(load.values()) <= 1.25 * average + 1e-6
    # A cold title keeps its edge when the hot one grows (cache locality).
    hotter = place(demand | {"hot": 900.0}, EDGES, capacity=100.0)
    moved = [t for t in demand if t != "hot" and hotter[t] != placement[t]]
    assert len(moved) <= 4


def test_place_one_for_titles_without_demand() -> None:
    assert place_one("new-title", {}, EDGES) == hash_order("new-title", EDGES)[:1]
    assert place_one("hot", {"hot": ["edge-9", "edge-2"]}, EDGES) == ["edge-2"]
    assert place({"a": 5.0}, [], 100.0) == {"a": []}


CONFIG = ScalerConfig(min_edges=1, max_edges=5, capacity=Capacity(rps=100), target_utilization=0.5,
                      lead_time=5, scale_in_window=60, scale_out_cooldown=2)  # fmt: skip


def obs(active: int, rps: float, average: float | None = None, warming: int = 0) -> Observation:
    return Observation(
        active, warming, rps, rps if average is None else average, "show" if rps else None, rps
    )


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        (obs(1, 10), Hold),
        (obs(1, 40), Hold),  # 40 req/s fits one edge at 50 % of 100
        (obs(1, 120), ScaleOut),  # needs 3
        (obs(1, 45, average=5), ScaleOut),  # growing fast: 45 + 8/s x 5 s projected
        (obs(1, 1000), ScaleOut),
        (obs(5, 1000), Hold),  # at the maximum
        (obs(2, 120, warming=1), Hold),  # the edge on its way covers it
    ],
)
def test_scale_decisions(observation: Observation, expected: type) -> None:
    decision, _ = decide(observation, CONFIG, ScalerMemory(), now=100.0)
    assert isinstance(decision, expected), decision


def test_scale_out_counts_and_cools_down() -> None:
    decision, memory = decide(obs(1, 120), CONFIG, ScalerMemory(), now=100.0)
    assert decision == ScaleOut(2, decision.reason) and "120 req/s" in decision.reason  # type: ignore[union-attr]
    again, _ = decide(obs(1, 220), CONFIG, memory, now=101.0)
    assert isinstance(again, Hold) and "cooling" in again.reason
    later, _ = decide(obs(1, 220), CONFIG, memory, now=102.5)
    assert isinstance(later, ScaleOut)


def test_scale_in_waits_for_the_whole_window_and_goes_one_at_a_time() -> None:
    memory = ScalerMemory()
    decision, memory = decide(obs(4, 10), CONFIG, memory, now=0.0)
    assert isinstance(decision, Hold)
    decision, memory = decide(obs(4, 10), CONFIG, memory, now=59.0)
    assert isinstance(decision, Hold)
    decision, memory = decide(obs(4, 10), CONFIG, memory, now=60.0)
    assert decision == ScaleIn(1, decision.reason)  # type: ignore[union-attr]
    decision, memory = decide(obs(3, 10), CONFIG, memory, now=61.0)
    assert isinstance(decision, Hold)  # the window starts again
    # A burst resets the window.
    decision, memory = decide(obs(3, 140), CONFIG, memory, now=90.0)
    decision, memory = decide(obs(3, 10), CONFIG, memory, now=100.0)
    decision, memory = decide(obs(3, 10), CONFIG, memory, now=150.0)
    assert isinstance(decision, Hold)
    decision, _ = decide(obs(1, 0), CONFIG, ScalerMemory(low_since=0.0), now=1000.0)
    assert isinstance(decision, Hold)  # never below the minimum


def test_scaler_config_is_validated() -> None:
    with pytest.raises(ValueError):
        ScalerConfig(min_edges=3, max_edges=2)
    with pytest.raises(ValueError):
        Capacity(rps=0)
    with pytest.raises(ValueError):
        Capacity(rps=None, bits_per_s=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000", Capacity(2000.0, None)),
        ("2000rps", Capacity(2000.0, None)),
        ("800mbit", Capacity(None, 800e6)),
        ("2000rps,800mbit", Capacity(2000.0, 800e6)),
        (" 800Mbit , 1500rps", Capacity(1500.0, 800e6)),
        ("1.5gbit", Capacity(None, 1.5e9)),
        ("64kbit", Capacity(None, 64e3)),
    ],
)
def test_parse_capacity(text: str, expected: Capacity) -> None:
    assert parse_capacity(text) == expected
    assert parse_capacity(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "fast", "2000rps,3000rps", "1mbit,2mbit", "0", "-5rps", "10 mb", "rps"])
def test_parse_capacity_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_capacity(text)


def test_bandwidth_bound_crowds_scale_out_at_few_requests() -> None:
    both = ScalerConfig(max_edges=8, capacity=parse_capacity("2000rps,200mbit"), target_utilization=0.7)
    # 250 players on a 2 Mbit/s rendition with 6 s segments: ~42 req/s but ~525 Mbit/s.
    top = Observation(1, 0, 42, 42, "hot", 42, total_bytes_per_s=525e6 / 8, average_bytes_per_s=525e6 / 8)
    decision, _ = decide(top, both, ScalerMemory(), now=0.0)
    assert decision == ScaleOut(3, decision.reason) and "525 Mbit/s" in decision.reason  # type: ignore[union-attr]
    # The same players on the lowest rung (~145 kbit/s) fit one edge on both measures.
    low = Observation(1, 0, 42, 42, "hot", 42, total_bytes_per_s=38e6 / 8, average_bytes_per_s=38e6 / 8)
    assert isinstance(decide(low, both, ScalerMemory(), now=0.0)[0], Hold)
    # Requests alone would never have scaled the top-rendition crowd out.
    rps_only = ScalerConfig(max_edges=8, capacity=parse_capacity("2000"), target_utilization=0.7)
    assert isinstance(decide(top, rps_only, ScalerMemory(), now=0.0)[0], Hold)
    assert Capacity(2000, 200e6).share(100, 25e6 / 8) == pytest.approx(0.125)
    assert Capacity(2000, 200e6).share(1000, 1e6 / 8) == pytest.approx(0.5)


MASTER = MasterPlaylist(
    variants=(
        Variant("234p/index.m3u8", 300_000, "avc1.64000d,mp4a.40.2", (416, 234), 250_000, 30, "audio"),
        Variant("360p/index.m3u8", 600_000, "avc1.64001e,mp4a.40.2", (640, 360), 500_000, 30, "audio"),
    ),
    audio=(AudioRendition("audio", "Main", "audio/index.m3u8", "en", channels=2),),
)
REFS = [EdgeRef("edge-1", "http://127.0.0.1:9001"), EdgeRef("edge-2", "http://127.0.0.1:9002")]


def test_master_without_steering_points_at_the_first_edge() -> None:
    text = render_master(master_for_edges(MASTER, "show", REFS, None))
    assert "http://127.0.0.1:9001/titles/show/234p/index.m3u8" in text
    assert "9002" not in text and "CONTENT-STEERING" not in text and "PATHWAY-ID" not in text


def test_master_with_steering_has_a_pathway_per_edge() -> None:
    rendered = render_master(master_for_edges(MASTER, "show", REFS, "/steer/show.json?session=a"))
    parsed = parse_master(rendered)
    assert parsed.content_steering is not None
    assert parsed.content_steering.server_uri == "/steer/show.json?session=a"
    assert parsed.content_steering.pathway_id == "edge-1"
    assert [(v.pathway_id, v.uri) for v in parsed.variants] == [
        ("edge-1", "http://127.0.0.1:9001/titles/show/234p/index.m3u8"),
        ("edge-1", "http://127.0.0.1:9001/titles/show/360p/index.m3u8"),
        ("edge-2", "http://127.0.0.1:9002/titles/show/234p/index.m3u8"),
        ("edge-2", "http://127.0.0.1:9002/titles/show/360p/index.m3u8"),
    ]
    assert [(a.group_id, a.uri) for a in parsed.audio] == [
        ("audio-edge-1", "http://127.0.0.1:9001/titles/show/audio/index.m3u8"),
        ("audio-edge-2", "http://127.0.0.1:9002/titles/show/audio/index.m3u8"),
    ]
    assert {v.audio_group for v in parsed.variants if v.pathway_id == "edge-2"} == {"audio-edge-2"}
    with pytest.raises(ValueError):
        master_for_edges(MASTER, "show", [], None)


def test_sessions_spread_over_the_titles_edges() -> None:
    firsts = {session_priority(["a", "b", "c"], ["a", "b", "c", "d"], f"s{i}")[0] for i in range(60)}
    assert firsts == {"a", "b", "c"}
    order = session_priority(["a", "b"], ["a", "b", "c"], "x")
    assert sorted(order[:2]) == ["a", "b"] and order[2] == "c"
    assert session_priority([], ["c", "d"], "x") == ["c", "d"]


def test_steering_manifest_clones_new_edges() -> None:
    edges = {r.id: r for r in [*REFS, EdgeRef("edge-3", "http://127.0.0.1:9003")]}
    manifest = steering_manifest(
        ["edge-3", "edge-1"], ["edge-1", "edge-2"], edges, "/steer/x.json?known=a", ttl=5
    )
    assert (
        manifest["VERSION"] == 1
        and manifest["TTL"] == 5
        and manifest["RELOAD-URI"] == "/steer/x.json?known=a"
    )
    assert manifest["PATHWAY-PRIORITY"] == ["edge-3", "edge-1"]
    assert manifest["PATHWAY-CLONES"] == [
        {"BASE-ID": "edge-1", "ID": "edge-3", "URI-REPLACEMENT": {"HOST": "127.0.0.1:9003"}}
    ]
    # A draining edge is simply left out of the priority: players move off it.
    plain = steering_manifest(["edge-2"], ["edge-1", "edge-2"], edges, "/r")
    assert plain["PATHWAY-PRIORITY"] == ["edge-2"] and "PATHWAY-CLONES" not in plain


def test_requests_waiting_for_a_machine_can_be_given_up() -> None:
    # One edge serves, one was asked for and never got a machine; demand has been low for the window.
    low = Observation(1, 1, 10, 10, "show", 10, unplaced=1)
    decision, _ = decide(low, CONFIG, ScalerMemory(low_since=0.0), now=100.0)
    assert isinstance(decision, ScaleIn)
    # An edge warming up (it has a machine) is let finish instead.
    warming = Observation(1, 1, 10, 10, "show", 10, unplaced=0)
    assert isinstance(decide(warming, CONFIG, ScalerMemory(low_since=0.0), now=100.0)[0], Hold)
