"""The edge's decisions, without sockets: cache rules, windows, prefetch, tiers, circuit breaking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.policy import (
    CacheControl,
    Reuse,
    conditional_headers,
    decide,
    etag_matches,
    freshness,
    is_storable,
    may_serve_stale_on_error,
    not_modified_since,
    parse_cache_control,
)
from edge.prefetch import cmcd_next_object, next_segments, resolve
from edge.stats import EdgeReport, TitleRates, TitleStats
from edge.store import CachedObject, DiskTier, MemoryLRU
from edge.upstream import Breaker, upstream_order
from media.hls import MediaPlaylist, Segment

DATE = "Wed, 25 Nov 2026 10:00:00 GMT"
T0 = 1_795_600_800.0  # DATE as a timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, CacheControl()),
        ("max-age=60", CacheControl(max_age=60)),
        ("public, max-age=31536000, immutable", CacheControl(max_age=31536000, public=True, immutable=True)),
        ("S-MAXAGE=5, Max-Age=60", CacheControl(max_age=60, s_maxage=5)),
        ("max-age=abc", CacheControl(max_age=0)),  # invalid max-age: stale (RFC 9111 4.2.1)
        ('max-age="30"', CacheControl(max_age=30)),
        ("no-store", CacheControl(no_store=True)),
        ("no-cache", CacheControl(no_cache=True)),
        ('no-cache="Set-Cookie"', CacheControl()),
        ("private, must-revalidate", CacheControl(private=True, must_revalidate=True)),
        ("proxy-revalidate", CacheControl(must_revalidate=True)),
        ("max-age=1, stale-while-revalidate=30, stale-if-error=600",
         CacheControl(max_age=1, stale_while_revalidate=30, stale_if_error=600)),
        ("community=UCI, max-age=-5", CacheControl(max_age=0)),
    ],
)  # fmt: skip
def test_parse_cache_control(value: str | None, expected: CacheControl) -> None:
    assert parse_cache_control(value) == expected


@pytest.mark.parametrize(
    ("method", "status", "headers", "storable"),
    [
        ("GET", 200, {"cache-control": "max-age=60"}, True),
        ("GET", 200, {}, True),  # storable; its lifetime may still be zero
        ("GET", 200, {"cache-control": "no-store"}, False),
        ("GET", 200, {"cache-control": "private, max-age=60"}, False),
        ("POST", 200, {"cache-control": "max-age=60"}, False),
        ("GET", 206, {"cache-control": "max-age=60"}, False),
        ("GET", 500, {"cache-control": "max-age=60"}, False),
        ("GET", 404, {"cache-control": "max-age=60"}, False),
        ("GET", 200, {"vary": "*"}, False),
        ("GET", 200, {"vary": "Accept-Encoding"}, True),
    ],
)
def test_is_storable(method: str, status: int, headers: dict[str, str], storable: bool) -> None:
    assert is_storable(method, status, headers) is storable


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"cache-control": "max-age=60"}, 60),
        ({"cache-control": "max-age=60, s-maxage=5"}, 5),  # a shared cache prefers s-maxage
        ({"date": DATE, "expires": "Wed, 25 Nov 2026 10:02:00 GMT"}, 120),
        ({"date": DATE, "expires": "0"}, 0),  # invalid Expires: already expired
        ({"date": DATE, "last-modified": "Wed, 25 Nov 2026 09:00:00 GMT"}, 360),  # 10 % heuristic
        ({"date": DATE, "last-modified": "Wed, 25 Nov 2020 10:00:00 GMT"}, 86_400),  # capped at a day
        ({}, 0),
    ],
)
def test_freshness_lifetime(headers: dict[str, str], lifetime: float) -> None:
    assert freshness(headers, T0, T0).lifetime == lifetime


def test_age_follows_rfc_9111_4_2_3() -> None:
    # Received 2 s after it was dated, with Age: 10 and a 1 s round trip: corrected initial age is 11.
    f = freshness({"date": DATE, "age": "10", "cache-control": "max-age=60"}, T0 + 1, T0 + 2)
    assert f.initial_age == 11
    assert f.age(T0 + 12) == 21


@pytest.mark.parametrize(
    ("cache_control", "elapsed", "decision"),
    [
        ("max-age=60", 10, Reuse.FRESH),
        ("max-age=60", 60, Reuse.REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", 70, Reuse.STALE_WHILE_REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", 95, Reuse.REVALIDATE),
        ("max-age=60, stale-while-revalidate=30, must-revalidate", 70, Reuse.REVALIDATE),
        ("no-cache, max-age=60", 1, Reuse.REVALIDATE),
        ("public, max-age=31536000, immutable", 86_400 * 300, Reuse.FRESH),
    ],
)
def test_decide(cache_control: str, elapsed: float, decision: Reuse) -> None:
    stored = freshness({"cache-control": cache_control}, T0, T0)
    assert decide(stored, T0 + elapsed) is decision


@pytest.mark.parametrize(
    ("cache_control", "elapsed", "allowed"),
    [
        ("max-age=1, stale-if-error=60", 30, True),
        ("max-age=1, stale-if-error=60", 62, False),
        ("max-age=1", 30, False),
        ("max-age=1, stale-if-error=60, must-revalidate", 30, False),
    ],
)
def test_stale_if_error(cache_control: str, elapsed: float, allowed: bool) -> None:
    assert (
        may_serve_stale_on_error(freshness({"cache-control": cache_control}, T0, T0), T0 + elapsed) is allowed
    )


@pytest.mark.parametrize(
    ("cache_control", "elapsed", "grace", "allowed"),
    [
        ("max-age=2", 30, 0, False),
        ("max-age=2", 30, 60, True),  # the edge's grace stands in for a missing stale-if-error
        ("max-age=2", 63, 60, False),
        ("max-age=2, stale-if-error=600", 300, 60, True),  # the longer of the two
        ("max-age=2, must-revalidate", 30, 86_400, False),
        ("max-age=2, no-cache", 30, 86_400, False),
    ],
)
def test_grace_on_error(cache_control: str, elapsed: float, grace: float, allowed: bool) -> None:
    stored = freshness({"cache-control": cache_control}, T0, T0)
    assert may_serve_stale_on_error(stored, T0 + elapsed, grace) is allowed


def test_breaker_reports_the_start_and_end_of_a_failing_spell() -> None:
    breaker = Breaker(threshold=3, cooldown=5.0)
    assert [breaker.failed(T0), breaker.failed(T0), breaker.failed(T0), breaker.failed(T0)] == [
        False, False, True, False
    ]  # fmt: skip
    assert breaker.failing and not breaker.available(T0 + 1) and breaker.available(T0 + 5)
    assert breaker.succeeded() is True and not breaker.failing
    assert breaker.succeeded() is False


def test_validators() -> None:
    stored = freshness({"etag": '"abc"', "last-modified": DATE}, T0, T0)
    assert conditional_headers(stored) == {"If-None-Match": '"abc"', "If-Modified-Since": DATE}
    assert conditional_headers(freshness({}, T0, T0)) == {}
    assert (
        etag_matches('"x", "abc"', '"abc"')
        and etag_matches("*", '"abc"')
        and etag_matches('W/"abc"', '"abc"')
    )
    assert not etag_matches('"x"', '"abc"') and not etag_matches('"abc"', None)
    assert not_modified_since(DATE, DATE) and not not_modified_since("Wed, 25 Nov 2026 09:00:00 GMT", DATE)
    assert not not_modified_since("garbage", DATE)


def test_title_stats_windows() -> None:
    stats = TitleStats()
    for second in range(100, 110):  # 10 requests a second for 10 s, 1000 bytes each
        for _ in range(10):
            stats.record("hot", 1000, second + 0.5, hit=True)
    stats.record("cold", 5000, 109.2, hit=False)
    rates = stats.rates(110.0)
    assert rates["hot"].rps_1s == 10 and rates["hot"].rps_10s == 10
    assert rates["hot"].rps_60s == pytest.approx(100 / 60)
    assert rates["hot"].bytes_per_s_10s == 10_000 and rates["hot"].bytes_per_s_1s == 10_000
    assert rates["cold"].rps_1s == 1 and rates["cold"].rps_10s == 0.1
    assert stats.hit_ratio == pytest.approx(100 / 101)
    assert "hot" not in stats.rates(200.0)  # idle past the longest window: forgotten


def test_prefetch_map_and_cmcd() -> None:
    playlist = MediaPlaylist(
        segments=tuple(Segment(f"seg_{i:05d}.m4s", 6.0) for i in range(4)), map_uri="init.mp4"
    )
    following = next_segments("/titles/abc/360p/index.m3u8", playlist, 2)
    assert following["/titles/abc/360p/seg_00000.m4s"] == (
        "/titles/abc/360p/seg_00001.m4s",
        "/titles/abc/360p/seg_00002.m4s",
    )
    assert following["/titles/abc/360p/seg_00002.m4s"] == ("/titles/abc/360p/seg_00003.m4s",)
    assert "/titles/abc/360p/seg_00003.m4s" not in following
    assert next_segments("/titles/abc/360p/index.m3u8", playlist, 0) == {}
    assert resolve("/titles/abc/360p/index.m3u8", "../../../etc/passwd") is None
    assert resolve("/titles/abc/360p/index.m3u8", "http://elsewhere/x.m4s") is None
    assert cmcd_next_object('br=800,nor="seg_00002.m4s",sid="a,b"', "/titles/abc/360p/seg_00001.m4s") == (
        "/titles/abc/360p/seg_00002.m4s"
    )
    assert cmcd_next_object('nor="..%2F..%2F..%2Fx"', "/titles/abc/360p/seg_00001.m4s") is None
    assert cmcd_next_object("br=800", "/titles/abc/360p/seg_00001.m4s") is None


def _object(key: str, size: int) -> CachedObject:
    return CachedObject(key, 200, {"Content-Type": "video/iso.segment"}, b"x" * size, freshness({}, T0, T0))


def test_memory_lru_stays_within_budget() -> None:
    lru = MemoryLRU(capacity=1000)
    for index in range(5):
        lru.put(_object(f"/o{index}", 300))
    assert lru.used <= 1000 and lru.cached_keys() == ["/o2", "/o3", "/o4"]
    assert lru.get("/o2") is not None  # touched: now the most recent
    evicted = lru.put(_object("/o5", 300))
    assert [o.key for o in evicted] == ["/o3"]
    assert lru.put(_object("/huge", 2000)) == [] and lru.get("/huge") is None
    assert lru.remove("/o5") and not lru.remove("/o5")
    assert lru.used == 600


async def test_disk_tier_rebuilds_and_discards_damage(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, capacity=10_000)
    disk.rebuild()
    for index in range(3):
        await disk.put(_object(f"/titles/a/360p/seg_{index}.m4s", 2000))
    # Damage one body, leave a stray temporary file.
    damaged = disk.get("/titles/a/360p/seg_1.m4s")
    assert damaged is not None
    damaged.path.write_bytes(b"short")
    (damaged.path.parent / "junk.1.tmp").write_bytes(b"partial")
    again = DiskTier(tmp_path, capacity=10_000)
    assert again.rebuild() == 2
    assert again.get("/titles/a/360p/seg_1.m4s") is None and not damaged.path.exists()
    entry = again.get("/titles/a/360p/seg_2.m4s")
    assert entry is not None and await again.read(entry) == b"x" * 2000
    assert entry.freshness == freshness({}, T0, T0)
    for index in range(10):  # over capacity: oldest go first
        await again.put(_object(f"/titles/b/{index}", 2000))
    assert again.used <= 10_000 and len(again) == 5
    assert not list(tmp_path.glob("*/*.tmp"))


def test_breaker_and_order() -> None:
    breakers = {"a": Breaker(threshold=2, cooldown=5), "b": Breaker(threshold=2, cooldown=5)}
    assert upstream_order(["a", "b"], breakers, 0, start=0) == ["a", "b"]
    assert upstream_order(["a", "b"], breakers, 0, start=1) == ["b", "a"]
    breakers["a"].failed(10)
    assert breakers["a"].available(10)  # one failure is not enough
    breakers["a"].failed(10)
    assert not breakers["a"].available(12)
    assert upstream_order(["a", "b"], breakers, 12, start=0) == ["b", "a"]  # tripped goes last
    assert breakers["a"].available(15)  # half-open after the cooldown
    breakers["a"].succeeded()
    assert breakers["a"].failures == 0
    parent = {"p": Breaker(), **breakers}
    assert upstream_order(["a", "b"], parent, 20, start=1, parent="p") == ["p", "b", "a"]


async def test_fast_answers_are_fresh_memory_hits_of_plain_requests_only() -> None:
    from edge.config import EdgeConfig
    from edge.proxy import Edge
    from service.front import Answer, SimpleRequest

    now = [T0]
    edge = Edge(EdgeConfig(upstreams=("http://127.0.0.1:9",), edge_id="e1"), clock=lambda: now[0])
    path = "/titles/show-abc123/360p/seg_00000.m4s"
    headers = {"Content-Type": "video/iso.segment", "Cache-Control": "max-age=60", "Content-Length": "5"}
    stored = freshness({"cache-control": "max-age=60", "etag": '"v1"', "last-modified": DATE}, T0, T0)
    edge.cache.memory.put(CachedObject(path, 200, headers, b"hello", stored))

    def ask(method: str = "GET", target: str = path, **extra: bytes) -> Answer | None:
        request = SimpleRequest(
            method, target, "", {name.replace("_", "-").encode(): v for name, v in extra.items()}
        )
        answered = edge.fast_answer(request)
        return answered[0] if answered is not None else None

    now[0] = T0 + 7.5
    answer = ask()
    assert answer is not None and answer.status == 200 and answer.body == b"hello"
    assert answer.route == "/titles/{title_id}/{rendition}/{file}"
    assert answer.head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: video/iso.segment\r\nCache-Control: max-age=60\r\nVia: 1.1 e1\r\n"
        b"X-Served-By: e1\r\nAccept-Ranges: bytes\r\nContent-Length: 5\r\nAge: 7\r\nX-Cache: HIT\r\n"
        b"Date: Wed, 25 Nov 2026 10:00:07 GMT\r\n\r\n"  # from the edge's clock
    )
    head = ask("HEAD")
    assert head is not None and head.body == b"" and b"Content-Length: 5\r\n" in head.head
    assert edge.stats.hits == 2
    assert ask(target="/titles/show-abc123/360p/seg_00001.m4s") is None  # a miss: aiohttp's work
    part = ask(range=b"bytes=1-2")
    assert part is not None and (part.status, bytes(part.body)) == (206, b"el")
    assert b"Content-Range: bytes 1-2/5\r\n" in part.head and b"Content-Length: 2\r\n" in part.head
    not_modified = ask(if_none_match=b'"v0", "v1"')
    assert not_modified is not None and (not_modified.status, not_modified.body) == (304, b"")
    assert (
        not_modified.head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
        and b"Content-Length" not in not_modified.head
    )
    assert ask(if_modified_since=DATE.encode()).status == 304  # type: ignore[union-attr]
    # If-None-Match decides alone when sent (RFC 9110 13.2.2): a different tag means the whole answer.
    changed = ask(if_none_match=b'"v0"', if_modified_since=DATE.encode())
    assert changed is not None and (changed.status, changed.body) == (200, b"hello")
    now[0] = T0 + 61  # stale: revalidation is aiohttp's work
    assert ask() is None


async def test_fast_answers_come_from_the_disk_tier_for_objects_too_large_for_memory(tmp_path: Path) -> None:
    from edge.config import EdgeConfig
    from edge.proxy import Edge
    from service.front import SimpleRequest

    edge = Edge(
        EdgeConfig(upstreams=("http://127.0.0.1:9",), edge_id="e1", cache_mem=4000, cache_dir=tmp_path,
                   cache_disk=1_000_000),
        clock=lambda: T0 + 1,
    )  # fmt: skip
    fresh = freshness({"cache-control": "max-age=60"}, T0, T0)
    large, small = (
        CachedObject(
            f"/titles/show-abc123/360p/{name}", 200, {"Content-Type": "video/mp4"}, b"y" * size, fresh
        )
        for name, size in (("seg_00001.m4s", 3000), ("init.mp4", 500))
    )
    for stored in (large, small):
        await edge.cache.disk.put(stored)  # type: ignore[union-attr]
    answered = edge.fast_answer(SimpleRequest("GET", large.key, "", {}))
    assert answered is not None
    answer, _ = answered
    assert bytes(answer.body) == large.body and b"Content-Length: 3000\r\n" in answer.head
    # A small one is left to the full path, which promotes it to memory for the next hit.
    assert edge.fast_answer(SimpleRequest("GET", small.key, "", {})) is None
    assert len(edge.cache.memory) == 0


def test_edge_report_round_trip_and_damaged_input() -> None:
    report = EdgeReport(
        id="e1", titles={"hot": TitleRates(rps_1s=5, bytes_per_s_1s=1e6)}, in_flight_requests=3, hit_ratio=0.5
    )
    assert EdgeReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert report.rps == 5 and report.bytes_per_s == 1e6
    # What an odd edge may send never breaks the reader: wrong types read as 0, unknown keys are ignored.
    damaged = EdgeReport.from_json({"id": 7, "titles": {"t": {"rps_1s": "x", "bytes_per_s_1s": True}},
                                    "in_flight_requests": None, "new_key": 1})  # fmt: skip
    assert damaged == EdgeReport(titles={"t": TitleRates()})
    assert EdgeReport.from_json([1, 2]) == EdgeReport()
    assert EdgeReport.from_json({"titles": []}).titles == {}


def test_fast_answers_with_signing_check_the_token_and_key_the_cache_without_it() -> None:
    from edge.config import EdgeConfig
    from edge.proxy import Edge
    from media.signing import Allowed, Grant, Refusal, Refused, SigningKeys, make_token, signed_path
    from service.front import SimpleRequest

    keys = SigningKeys((b"k" * 16,))
    edge = Edge(
        EdgeConfig(upstreams=("http://127.0.0.1:9",), edge_id="e1", signing_keys=keys), clock=lambda: T0
    )
    path = "/titles/show-abc123/360p/seg_00000.m4s"
    fresh = freshness({"cache-control": "max-age=60"}, T0, T0)
    edge.cache.memory.put(CachedObject(path, 200, {"Content-Type": "video/iso.segment"}, b"hello", fresh))

    def ask(target: str, peer: str = "198.51.100.7") -> bytes | None:
        answered = edge.fast_answer(SimpleRequest("GET", target, "", {}, peer))
        return bytes(answered[0].body) if answered is not None else None

    title = Grant("/titles/show-abc123/", int(T0) + 60)
    assert ask(signed_path(make_token(keys, title), path)) == b"hello"
    assert (
        ask(signed_path(make_token(keys, Grant(title.prefix, title.expires, "198.51.100.7")), path))
        == b"hello"
    )
    assert edge.stats.hits == 2  # counted under the title, as an unsigned hit is
    for refused in (
        path,  # unsigned
        signed_path(make_token(keys, Grant(title.prefix, int(T0))), path),  # expired
        signed_path(make_token(keys, Grant("/titles/other-title/", title.expires)), path),
        signed_path(make_token(keys, Grant(title.prefix, title.expires, "198.51.100.8")), path),
        signed_path(make_token(SigningKeys((b"x" * 16,)), title), path),
    ):
        assert ask(refused) is None  # answered by aiohttp's path, which says 403 and why
    assert edge.stats.hits == 2
    # The edge's own upstream request for the object is signed for that object alone, briefly.
    upstream = edge.filler.upstream_path(path, T0)
    assert upstream.endswith(path) and upstream.startswith("/t/S1.")
    assert edge.tokens.check(upstream, "", T0 + 59) == Allowed(path)
    other = upstream.replace(path, "/titles/show-abc123/master.m3u8")
    assert edge.tokens.check(other, "", T0) == Refused(Refusal.WRONG_PATH)
    assert edge.tokens.check(upstream, "", T0 + 60) == Refused(Refusal.EXPIRED)
