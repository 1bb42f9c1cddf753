"""Merging the runs of several load generators: the merge of two runs' reports is the report of one run
that saw everything both saw. Synthetic data, built so that every sum is exact in binary (values in
1/1024ths), so reports compare equal, not merely close."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from loadtest.config import LoadTestConfig
from loadtest.metrics import LogHistogram, Recorder, Second, ViewerStats, Window, merge_series, second_of
from loadtest.player import SessionResult
from loadtest.report import build_report, summary_text
from loadtest.tally import GeneratorRun, Tally, TitleViewers, merge_tallies
from media.errors import InvalidInput

URL = "http://127.0.0.1:8000/titles/crowd/master.m3u8"
CALM = "http://127.0.0.1:8000/titles/calm/master.m3u8"
LADDER = {URL: ((145_000, 365_000, 2_000_000), ("234p", "360p", "540p")), CALM: ((145_000,), ("234p",))}
TYPES = ("manifest", "playlist", "init", "video", "audio")


@dataclass(frozen=True)
class Request:
    second: int
    object_type: str
    latency: float
    ttfb: float | None
    nbytes: int
    error: str | None
    x_cache: str | None
    served_by: str | None


@dataclass(frozen=True)
class Session:
    url: str
    result: SessionResult
    second: int  # the second in which it ended


def requests(seed: int, count: int) -> list[Request]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        failed = rng.random() < 0.1
        out.append(
            Request(
                second=rng.randint(1, 6),
                object_type=rng.choice(TYPES),
                latency=rng.randint(1, 4096) / 1024,
                ttfb=None if failed and rng.random() < 0.5 else rng.randint(1, 512) / 1024,
                nbytes=0 if failed else rng.randint(100, 2_000_000),
                error=rng.choice(("http_503", "timeout", "connect")) if failed else None,
                x_cache=rng.choice(("HIT", "MISS", "hit from edge-1", None)),
                served_by=rng.choice(("edge-1", "edge-2", "edge-3", None)),
            )
        )
    return out


def sessions(seed: int, count: int) -> list[Session]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        url, second = rng.choice((URL, CALM)), rng.randint(1, 6)
        rungs = len(LADDER[url][0])
        started = rng.random() < 0.9
        out.append(
            Session(
                url,
                SessionResult(
                    started=started,
                    startup=rng.randint(64, 4096) / 1024 if started else None,
                    stalls=rng.randint(0, 2),
                    stall_time=rng.randint(0, 2048) / 1024,
                    played=tuple(rng.randint(0, 40 * 1024) / 1024 for _ in range(rungs)) if started else (),
                    switches_up=rng.randint(0, 3),
                    switches_down=rng.randint(0, 3),
                    ended=rng.random() < 0.5,
                    failed=not started,
                    errors=0,
                ),
                second,
            )
        )
    return out


def tally_of(seen: Sequence[Request], played: Sequence[Session], *, seconds: int = 6) -> Tally:
    """What one generator would have counted, having seen these requests and sessions."""
    recorder, overall, titles, series = Recorder(), ViewerStats(), {}, []
    for k in range(1, seconds + 1):
        for r in (r for r in seen if r.second == k):
            recorder.record(r.object_type, latency=r.latency, ttfb=r.ttfb, nbytes=r.nbytes, error=r.error,
                            x_cache=r.x_cache, served_by=r.served_by)  # fmt: skip
        ended = [s for s in played if s.second == k]
        by_label: dict[str, float] = {}
        for session in ended:
            bitrates, labels = LADDER[session.url]
            if not session.result.played:
                bitrates, labels = (), ()
            title = titles.setdefault(session.url, TitleViewers(background=session.url == CALM))
            title.stats.add(session.result, bitrates, labels, 2.0)
            overall.add(session.result, bitrates, labels, 2.0)
            for label, seconds_played in zip(labels, session.result.played, strict=True):
                by_label[label] = by_label.get(label, 0.0) + seconds_played
        series.append(second_of(k + 0.001, recorder.close_window(), active=len(played), stalled=len(ended),
                                rebuffers=sum(s.result.stalls for s in ended), cpu=0.25, cpu_wait=None,
                                loop_lag=0.001, edges=None, played=by_label))  # fmt: skip
    return Tally(recorder, overall, titles, series, active=len(played), wall=6.5, started=1_800_000_000.0)


MERGED = ("viewers", "titles", "requests", "series")
SECOND_KEYS = ("t", "active", "stalled", "rebuffers", "requests", "bytes", "errors", "p99_ms", "played")


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    out = {key: report[key] for key in MERGED}
    out["series"] = [{key: row[key] for key in SECOND_KEYS} for row in report["series"]]
    return out


Split = Callable[[int], bool]  # which part an item (by its position) goes to


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(lambda i: i % 2 == 0, id="alternate"),
        pytest.param(lambda i: i < 40, id="first-part"),
        pytest.param(lambda i: True, id="all-in-one"),
        pytest.param(lambda i: i % 7 == 3, id="few-in-one"),
    ],
)
def test_the_merge_of_two_reports_is_the_report_of_their_union(split: Split) -> None:
    seen, played = requests(1, 400), sessions(2, 60)
    one = tally_of([r for i, r in enumerate(seen) if split(i)], [s for i, s in enumerate(played) if split(i)])
    two = tally_of([r for i, r in enumerate(seen) if not split(i)],
                   [s for i, s in enumerate(played) if not split(i)])  # fmt: skip
    union = tally_of(seen, played)
    config = LoadTestConfig(URL, players=60)
    merged = build_report(
        config, [GeneratorRun("198.51.100.2", 30, one), GeneratorRun("198.51.100.3", 30, two)]
    )
    alone = build_report(config, [GeneratorRun("198.51.100.2", 60, union)])
    assert comparable(merged) == comparable(alone)
    assert merged["requests"]["total"] == 400 and merged["viewers"]["sessions"] == 60
    assert [g["players"] for g in merged["generators"]] == [30, 30]


def test_percentiles_come_from_the_merged_histograms_not_from_averages() -> None:
    fast, slow = Recorder(), Recorder()
    for _ in range(99):
        fast.record("video", latency=0.010, ttfb=0.001, nbytes=1)
    slow.record("video", latency=2.0, ttfb=0.001, nbytes=1)
    slow.record("video", latency=2.0, ttfb=0.001, nbytes=1)
    merged = merge_tallies([Tally(recorder=fast, wall=1.0), Tally(recorder=slow, wall=1.0)])
    latency = merged.recorder.summary(1.0)["by_type"]["video"]["latency_ms"]
    # 101 values, the two slowest 2 s: the p99 (rank 100) is 2 s; an average of p99s would say 1 s.
    assert latency["p99"] == 2000.0 and latency["p50"] == pytest.approx(10.0, rel=0.01)
    assert latency["mean"] == pytest.approx((99 * 10 + 2 * 2000) / 101, abs=1e-3)


def test_histograms_merge_bucket_by_bucket() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(5000)]
    left, right, union = LogHistogram(), LogHistogram(), LogHistogram()
    for i, value in enumerate(values):
        (left if i % 3 else right).add(value)
        union.add(value)
    merged = left.merged(right)
    for q in (1, 50, 90, 99, 99.9, 100):
        assert merged.percentile(q) == union.percentile(q)
    assert (merged.count, merged.min, merged.max) == (union.count, union.min, union.max)
    assert merged.total == pytest.approx(union.total)
    assert left.count + right.count == 5000 and left.count < 5000  # the inputs are left alone
    with pytest.raises(ValueError, match="same buckets"):
        left.merged(LogHistogram(growth=1.05))


def row(t: float, requests: int, *, cpu: float = 0.2, played: dict[str, float] | None = None) -> Second:
    window = Window(requests=requests, bytes=requests * 1000)
    for i in range(requests):
        window.latency.add((i + 1) / 1024)
    return second_of(t, window, active=requests, stalled=0, rebuffers=0, cpu=cpu, cpu_wait=None,
                     loop_lag=0.0, edges=None, played=played)  # fmt: skip


def test_series_merge_by_second_and_keep_the_busiest_generator() -> None:
    a = [row(1.002, 10, played={"540p": 0.5}), row(2.001, 10, cpu=0.95), row(3.004, 10)]
    b = [row(0.998, 5, played={"540p": 0.25, "360p": 1.0}), row(3.1, 5)]  # its second 2 was skipped
    merged = merge_series([a, b])
    assert [(s.key, s.requests, s.active) for s in merged] == [(1, 15, 15), (2, 10, 10), (3, 15, 15)]
    assert merged[0].played == {"540p": 0.75, "360p": 1.0}
    assert merged[1].saturated and not merged[0].saturated  # one generator was, that second
    assert merged[2].t == 3.1
    assert merged[0].p99_ms == round(10 / 1024 * 1000, 3)  # the slowest of the 15 (nearest rank 15)


@pytest.mark.parametrize(
    ("players", "generators", "counts"),
    [(10, 3, [4, 3, 3]), (3, 3, [1, 1, 1]), (2, 3, [1, 1, 0]), (7, 1, [7]), (1000, 4, [250] * 4)],
)
def test_players_are_dealt_exactly_and_every_share_spans_the_whole_ramp(
    players: int, generators: int, counts: list[int]
) -> None:
    whole = LoadTestConfig(URL, players=players, ramp=10.0).arrivals()
    shares = [LoadTestConfig(URL, players=players, ramp=10.0, share=(i, generators)).arrivals()
              for i in range(generators)]  # fmt: skip
    assert [len(s) for s in shares] == counts
    assert sorted((a.at, a.url) for s in shares for a in s) == sorted((a.at, a.url) for a in whole)
    if players >= generators * 2:
        assert all(s[-1].at >= 10.0 - 10.0 * generators / players for s in shares)  # the ramp is global


def test_a_flash_crowd_share_keeps_its_background_viewers() -> None:
    def config(i: int) -> LoadTestConfig:
        return LoadTestConfig(URL, players=9, profile="flash", titles=(CALM,), background=3, share=(i, 2))

    shares = [config(i).arrivals() for i in range(2)]
    assert [len(s) for s in shares] == [6, 6]
    assert sum(a.background for s in shares for a in s) == 3


def test_a_share_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidInput, match="share"):
        LoadTestConfig(URL, share=(3, 3))


def test_a_lost_generator_is_reported_with_the_seconds_it_streamed() -> None:
    finished = tally_of(requests(4, 100), sessions(5, 10))
    streamed = [row(1.0, 7), row(2.0, 7, cpu=0.97)]
    config = LoadTestConfig(URL, players=20)
    report = build_report(
        config,
        [
            GeneratorRun("198.51.100.2", 10, finished),
            GeneratorRun("198.51.100.3", 10, None, streamed, lost="its node died"),
        ],
    )
    assert report["requests"]["total"] == 100  # the totals are the finished generator's
    assert [s["requests"] for s in report["series"][:2]] == [
        finished.series[0].requests + 7,
        finished.series[1].requests + 7,
    ]
    lost = report["generators"][1]
    assert (lost["lost"], lost["players"], lost["seconds"]) == ("its node died", 10, 2)
    assert lost["saturated"] and lost["cpu_max"] == 0.97
    assert report["generator"]["saturated"] and report["generator"]["saturated_s"] == 1
    assert report["generators"][0]["lost"] is None
    text = summary_text(report)
    assert "2 generators, the busiest: CPU mean" in text and "WARNING: a generator was CPU-saturated" in text
    assert "  198.51.100.3: 10 players, CPU mean" in text and "LOST after 2 s (its node died)" in text
