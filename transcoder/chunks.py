"""Chunked encoding, decided purely: where a title is cut into chunks, whether to cut it at all, and how
far the chunks have come together.

A chunk is a whole number of segments. IDR frames are forced at every multiple of the key frame interval,
and the segment duration is a multiple of it (``PackageConfig``), so every chunk boundary is an IDR in the
output and a segment boundary of the single-process encode: chunks joined end to end cut the title at the
very instants one process would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chunk:
    index: int
    start: float  # seconds into the title; a multiple of the segment duration
    duration: float  # seconds; the last chunk's runs to the end of the source, whatever its probed length
    last: bool

    def first_segment(self, segment_duration: int) -> int:
        """The title-wide number of this chunk's first segment."""
        return round(self.start / segment_duration)


def plan_chunks(duration: float, segment_duration: int, chunk_seconds: float) -> tuple[Chunk, ...]:
    """Chunks of ``chunk_seconds`` rounded down to whole segments (one at least); the last chunk takes the
    remainder, and a remainder shorter than one segment joins the chunk before it (a chunk could otherwise
    hold nothing but the last frames of a longer audio track)."""
    if segment_duration <= 0:
        raise ValueError("the segment duration must be positive")
    length = max(1, math.floor(chunk_seconds / segment_duration)) * segment_duration
    whole = max(1, math.floor(duration / length))
    if duration - whole * length >= segment_duration:
        whole += 1  # the remainder is a chunk of its own
    return tuple(
        Chunk(
            index=index,
            start=float(index * length),
            duration=(length if index < whole - 1 else max(0.0, duration - index * length)),
            last=index == whole - 1,
        )
        for index in range(whole)
    )


@dataclass(frozen=True)
class SingleProcess:
    """One ffmpeg process decodes the title once and encodes every rung and the audio."""


@dataclass(frozen=True)
class Chunked:
    """The video in ``chunks``, up to ``parallel`` at once; the audio in one process of its own."""

    chunks: tuple[Chunk, ...]
    parallel: int


Encoding = SingleProcess | Chunked


# Containers whose index lets ffmpeg seek to the key frame before any instant (MP4/MOV, Matroska/WebM).
# MPEG-TS and the like seek by byte position, can land after the instant asked for, and lose frames.
_SEEKABLE_CONTAINERS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})


def seeks_accurately(container: str) -> bool:
    """Can a chunk of this container (ffprobe's comma-separated format names) be decoded on its own?"""
    return any(name.strip() in _SEEKABLE_CONTAINERS for name in container.split(","))


def choose_encoding(
    duration: float, segment_duration: int, chunk_seconds: float, free_slots: int, *, seekable: bool
) -> Encoding:
    """Chunks pay off for a title longer than two of them, and only with more than one packager slot free
    to run them (``chunk_seconds`` 0 turns chunking off) and a source each chunk can seek in."""
    if chunk_seconds <= 0 or free_slots <= 1 or not seekable:
        return SingleProcess()
    chunks = plan_chunks(duration, segment_duration, chunk_seconds)
    if len(chunks) <= 2:
        return SingleProcess()
    return Chunked(chunks=chunks, parallel=min(free_slots, len(chunks)))


@dataclass
class ChunkProgress:
    """The title's fraction done from each chunk's own, weighted by chunk duration."""

    chunks: tuple[Chunk, ...]
    _done: dict[int, float] = field(default_factory=dict, init=False)

    def update(self, index: int, fraction: float) -> float:
        # A chunk's fraction never goes back (a retried chunk restarts its ffmpeg, not the title's bar).
        self._done[index] = max(self._done.get(index, 0.0), min(1.0, max(0.0, fraction)))
        return self.fraction

    @property
    def fraction(self) -> float:
        total = sum(chunk.duration for chunk in self.chunks)
        if total <= 0:
            return 0.0
        done = sum(chunk.duration * self._done.get(chunk.index, 0.0) for chunk in self.chunks)
        # 1.0 is said by the packager once the title is published, never by the encoders.
        return min(0.99, done / total)


def slots_used(encoding: Encoding) -> int:
    """Packager slots a title holds while it is encoded this way."""
    match encoding:
        case SingleProcess():
            return 1
        case Chunked(parallel=parallel):
            return parallel
