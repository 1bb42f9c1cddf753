"""Chunk planning, the chunk-or-not choice and chunk progress: pure, in tables."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import pytest

from tests.transcoder.test_plan_command import FACTS
from transcoder.chunked import ChunkJob
from transcoder.chunks import (
    Chunk,
    Chunked,
    ChunkProgress,
    SingleProcess,
    choose_encoding,
    plan_chunks,
    seeks_accurately,
    slots_used,
)
from transcoder.plan import PackageConfig, make_plan


@pytest.mark.parametrize(
    ("duration", "segment", "chunk_seconds", "expected"),
    [
        # Whole chunks, then the remainder as the last one.
        (10.0, 2, 4, [(0, 4, False), (4, 4, False), (8, 2, True)]),
        (130.0, 6, 60, [(0, 60, False), (60, 60, False), (120, 10, True)]),
        # A remainder of less than one segment joins the chunk before it.
        (9.9, 2, 4, [(0, 4, False), (4, 5.9, True)]),
        (125.0, 6, 60, [(0, 60, False), (60, 65, True)]),
        # An exact multiple: no empty chunk at the end.
        (8.0, 2, 4, [(0, 4, False), (4, 4, True)]),
        # Chunk lengths are rounded down to whole segments, and never below one segment.
        (20.0, 2, 5, [(0, 4, False), (4, 4, False), (8, 4, False), (12, 4, False), (16, 4, True)]),
        (20.0, 6, 4, [(0, 6, False), (6, 6, False), (12, 8, True)]),
        # Shorter than one chunk: one chunk, the whole title.
        (3.0, 2, 4, [(0, 3, True)]),
        (0.5, 6, 60, [(0, 0.5, True)]),
    ],
)
def test_plan_chunks(
    duration: float, segment: int, chunk_seconds: int, expected: list[tuple[float, float, bool]]
) -> None:
    chunks = plan_chunks(duration, segment, chunk_seconds)
    assert [(c.start, pytest.approx(c.duration), c.last) for c in chunks] == expected
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("duration", [0.1 * n for n in range(1, 400, 7)])
@pytest.mark.parametrize(("segment", "chunk_seconds"), [(2, 4), (6, 60), (6, 13), (4, 4)])
def test_chunks_tile_the_title_on_segment_boundaries(
    duration: float, segment: int, chunk_seconds: int
) -> None:
    chunks = plan_chunks(duration, segment, chunk_seconds)
    assert chunks[0].start == 0 and chunks[-1].last and not any(c.last for c in chunks[:-1])
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.start + before.duration  # no gap, no overlap
    for chunk in chunks:
        assert chunk.start % segment == 0
        assert chunk.first_segment(segment) * segment == chunk.start
        assert chunk.last or chunk.duration % segment == 0  # whole segments but the last
        assert chunk.duration > 0
    assert sum(c.duration for c in chunks) == pytest.approx(duration)


def test_plan_chunks_rejects_a_zero_segment() -> None:
    with pytest.raises(ValueError, match="segment duration"):
        plan_chunks(10.0, 0, 4)


@pytest.mark.parametrize(
    ("duration", "segment", "chunk_seconds", "free_slots", "seekable", "expected"),
    [
        (10.0, 2, 4, 2, True, ("chunked", 3, 2)),
        (10.0, 2, 4, 8, True, ("chunked", 3, 3)),  # never more at once than there are chunks
        (10.0, 2, 4, 1, True, ("single",)),  # no slot to spare
        (10.0, 2, 4, 0, True, ("single",)),
        (10.0, 2, 0, 4, True, ("single",)),  # chunking off
        (10.0, 2, 4, 4, False, ("single",)),  # a source a chunk cannot seek in
        (8.0, 2, 4, 4, True, ("single",)),  # two chunks: not longer than two
        (9.9, 2, 4, 4, True, ("single",)),  # the short remainder joins the second chunk
        (120.0, 6, 60, 4, True, ("single",)),
        (180.0, 6, 60, 4, True, ("chunked", 3, 3)),
        (3600.0, 6, 60, 4, True, ("chunked", 60, 4)),
    ],
)
def test_choose_encoding(
    duration: float,
    segment: int,
    chunk_seconds: int,
    free_slots: int,
    seekable: bool,
    expected: tuple[object, ...],
) -> None:
    encoding = choose_encoding(duration, segment, chunk_seconds, free_slots, seekable=seekable)
    match encoding:
        case SingleProcess():
            assert expected == ("single",)
            assert slots_used(encoding) == 1
        case Chunked(chunks=chunks, parallel=parallel):
            assert expected == ("chunked", len(chunks), parallel)
            assert chunks == plan_chunks(duration, segment, chunk_seconds)
            assert slots_used(encoding) == parallel


@pytest.mark.parametrize(
    ("container", "seekable"),
    [
        ("mov,mp4,m4a,3gp,3g2,mj2", True),
        ("matroska,webm", True),
        ("mpegts", False),
        ("avi", False),
        ("", False),
    ],
)
def test_seeks_accurately(container: str, seekable: bool) -> None:
    assert seeks_accurately(container) is seekable


def test_chunk_progress_is_weighted_by_duration_and_never_goes_back() -> None:
    chunks = plan_chunks(10.0, 2, 4)  # 4 s, 4 s, 2 s
    progress = ChunkProgress(chunks)
    assert progress.fraction == 0.0
    assert progress.update(0, 0.5) == pytest.approx(0.2)
    assert progress.update(2, 1.0) == pytest.approx(0.4)
    assert progress.update(0, 0.25) == pytest.approx(0.4)  # a late report of less changes nothing
    assert progress.update(1, 2.0) == pytest.approx(0.8)  # clamped to the chunk's whole
    assert progress.update(0, 1.0) == 0.99  # 1.0 only once the title is published
    assert ChunkProgress((Chunk(0, 0.0, 0.0, True),)).update(0, 1.0) == 0.0


def test_chunk_jobs_pickle_for_workers_on_other_machines() -> None:
    plan = make_plan(Path("/src/in.mp4"), FACTS, PackageConfig())
    job = ChunkJob(plan=plan, chunk=plan_chunks(10.0, 6, 4)[0])
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and copy.plan.source_facts == FACTS
