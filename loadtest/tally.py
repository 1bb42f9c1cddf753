"""What a run counted, as one value: the report is made of it, and the runs of several load generators
merge into one exactly — counts summed, histograms bucket by bucket, time series second by second, and
every percentile read from the merged histograms, never averaged.

Rules of this file: values in, values out; no clock, no I/O. ``merge_*`` functions leave their inputs alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.metrics import (
    Recorder,
    Second,
    ViewerStats,
    generator_summary,
    merge_recorders,
    merge_series,
)


@dataclass
class TitleViewers:
    """The sessions of one title (a master URL)."""

    stats: ViewerStats = field(default_factory=ViewerStats)
    background: bool = False


@dataclass
class Tally:
    recorder: Recorder = field(default_factory=Recorder)
    overall: ViewerStats = field(default_factory=ViewerStats)
    titles: dict[str, TitleViewers] = field(default_factory=dict)
    series: list[Second] = field(default_factory=list)
    active: int = 0  # players in a session when the run ended
    cpu_seconds: float = 0.0
    wall: float = 0.0  # seconds the run lasted
    started: float = 0.0  # wall-clock time it began (Unix seconds)
    max_rss_mib: float = 0.0
    interrupted: bool = False


def merge_tallies(tallies: Sequence[Tally]) -> Tally:
    """Several runs as one. Walls overlap (the runs went on at the same time): the longest is the wall."""
    titles: dict[str, TitleViewers] = {}
    for tally in tallies:
        for url, title in tally.titles.items():
            mine = titles.setdefault(url, TitleViewers(background=title.background))
            mine.stats = mine.stats.merged(title.stats)
    overall = ViewerStats()
    for tally in tallies:
        overall = overall.merged(tally.overall)
    return Tally(
        recorder=merge_recorders(t.recorder for t in tallies),
        overall=overall,
        titles=titles,
        series=merge_series(t.series for t in tallies),
        active=sum(t.active for t in tallies),
        cpu_seconds=sum(t.cpu_seconds for t in tallies),
        wall=max((t.wall for t in tallies), default=0.0),
        started=min((t.started for t in tallies), default=0.0),
        max_rss_mib=max((t.max_rss_mib for t in tallies), default=0.0),
        interrupted=any(t.interrupted for t in tallies),
    )


@dataclass
class GeneratorRun:
    """One load generator's part of a run: where it ran, how many players, and what it counted."""

    node: str
    players: int  # arrivals it was given (background viewers included)
    tally: Tally | None = None  # its totals; None when it was lost before it could send them
    streamed: list[Second] = field(default_factory=list)  # the seconds it sent while it ran
    lost: str | None = None  # why the run lost it (its machine died, it did not answer)

    @property
    def series(self) -> list[Second]:
        return self.tally.series if self.tally is not None else self.streamed

    def summary(self) -> dict[str, Any]:
        """Its CPU and loop lag (``generator_summary``), its players, and whether it was lost."""
        series = self.series
        if self.tally is not None:
            cpu_seconds, wall, rss = self.tally.cpu_seconds, self.tally.wall, self.tally.max_rss_mib
        else:  # what it streamed: one row a second
            cpu_seconds, wall, rss = sum(s.cpu for s in series), float(len(series)), 0.0
        return {
            "node": self.node,
            "players": self.players,
            "lost": self.lost,
            "seconds": len(series),
            **generator_summary(series, cpu_seconds, wall),
            "max_rss_mib": rss,
        }


def merge_generators(runs: Sequence[GeneratorRun]) -> Tally:
    """The run of every generator as one: the totals of those that finished, and the time series of all
    of them (a lost one's up to its last streamed second)."""
    merged = merge_tallies([run.tally for run in runs if run.tally is not None])
    merged.series = merge_series(run.series for run in runs)
    return merged


def combined_generator(summaries: Sequence[dict[str, Any]], series: Iterable[Second]) -> dict[str, Any]:
    """The generators as one row of the report: whether any was saturated or starved, and the busiest
    one's numbers; seconds counted on the merged series (a second in which any generator was)."""
    rows = list(series)
    waits = [s["cpu_wait_mean"] for s in summaries if s["cpu_wait_mean"] is not None]
    return {
        "cpu_s": round(sum(s["cpu_s"] for s in summaries), 3),
        "cpu_mean": max((s["cpu_mean"] for s in summaries), default=0.0),
        "cpu_max": max((s["cpu_max"] for s in summaries), default=0.0),
        "saturated_s": sum(1 for row in rows if row.saturated),
        "saturated": any(s["saturated"] for s in summaries),
        "cpu_wait_mean": max(waits) if waits else None,
        "starved_s": sum(1 for row in rows if row.starved),
        "starved": any(s["starved"] for s in summaries),
        "loop_lag_max_ms": max((s["loop_lag_max_ms"] for s in summaries), default=0.0),
        "max_rss_mib": max((s["max_rss_mib"] for s in summaries), default=0.0),
    }
