"""A title encoded in chunks: each chunk's video by an ffmpeg process of its own (here, or on another
machine through a chunk runner), the audio once for the whole title (so no AAC priming gap at any join),
then the chunks assembled into one title in the staging directory.

The assembled staging directory looks exactly like the single-process one (one ``init.mp4``, segments
numbered from 0 and an ``index.m3u8`` per rendition), so ``finish_title`` checks and completes both alike.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.errors import DamagedMedia, SurgeError
from media.hls import MediaPlaylist, Segment, parse_media, render_media
from media.layout import is_safe_component
from media.mp4 import track_setup
from transcoder.chunks import Chunk, ChunkProgress
from transcoder.command import (
    INIT_NAME,
    PLAYLIST_NAME,
    SEGMENT_PATTERN,
    build_audio_command,
    build_video_chunk_command,
)
from transcoder.plan import PackagePlan
from transcoder.run import ProgressCallback, run_ffmpeg

# Chunk outputs live inside the staging directory (same filesystem: assembling is renames) and are gone
# before it is published.
CHUNKS_DIR = ".chunks"
DEFAULT_STALL_TIMEOUT_S = 120.0
# How far a chunk's video may end from where the next one starts: a frame or two of rounding, never a gap.
JOIN_SLACK_S = 0.25


@dataclass(frozen=True)
class ChunkJob:
    """One chunk of one title's video: everything a machine needs to encode it. Plain frozen values, so
    it pickles (for a worker on another machine, whose copy of the source may live at another path)."""

    plan: PackagePlan
    chunk: Chunk


# Encodes ``job`` into the directory given, which it creates, as ``encode_video_chunk`` does (wherever it
# runs, the files must be there when it returns); raises on failure, and stops its encoder on cancellation.
ChunkRunner = Callable[[ChunkJob, Path], Awaitable[None]]


async def encode_video_chunk(
    source: Path,
    chunk: Chunk,
    plan: PackagePlan,
    out_dir: Path,
    progress: ProgressCallback | None = None,
    *,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
) -> None:
    """Encode ``chunk`` of ``plan``'s video, every rung, from ``source`` into ``out_dir``.

    Writes ``out_dir/<rendition>/`` with ``init.mp4``, ``index.m3u8`` and ``seg_00000.m4s`` … (numbered
    from 0 within the chunk; the media itself carries the title's timeline). Self-contained: needs only
    ffmpeg and the source, so it runs on any machine. ``progress`` gets this chunk's fraction done.
    Raises ``TranscodeFailed`` (or ``ToolMissing``); on cancellation ffmpeg is stopped first.
    """
    await asyncio.to_thread(_make_dirs, out_dir, [rendition.name for rendition in plan.renditions])
    command = build_video_chunk_command(source, plan, chunk, out_dir)
    await run_ffmpeg(command, chunk.duration, progress, stall_timeout, frame_rate=plan.frame_rate)


def _make_dirs(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)


def local_chunk_runner(
    concurrency: int,
    *,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
    on_progress: Callable[[int, float], None] | None = None,
) -> ChunkRunner:
    """Chunks encoded by ffmpeg on this machine, at most ``concurrency`` at once; ``on_progress`` gets
    (chunk index, its fraction done)."""
    slots = asyncio.Semaphore(concurrency)

    async def run(job: ChunkJob, out_dir: Path) -> None:
        async with slots:
            index = job.chunk.index
            progress = None if on_progress is None else (lambda fraction: on_progress(index, fraction))
            await encode_video_chunk(
                job.plan.source, job.chunk, job.plan, out_dir, progress, stall_timeout=stall_timeout
            )

    return run


async def encode_chunked(
    plan: PackagePlan,
    chunks: tuple[Chunk, ...],
    staging: Path,
    *,
    parallel: int,
    runner: ChunkRunner | None = None,
    on_progress: ProgressCallback | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
) -> None:
    """Encode every chunk (through ``runner``; by default locally, ``parallel`` at once) and the audio,
    then assemble them into ``staging``. The first failure stops everything else and is raised."""
    progress = ChunkProgress(chunks)

    def report(index: int, fraction: float) -> None:
        overall = progress.update(index, fraction)
        if on_progress is not None:
            on_progress(overall)

    run_chunk = runner or local_chunk_runner(parallel, stall_timeout=stall_timeout, on_progress=report)
    chunk_root = staging / CHUNKS_DIR

    async def encode(chunk: Chunk) -> None:
        await run_chunk(ChunkJob(plan, chunk), chunk_dir(chunk_root, chunk))
        report(chunk.index, 1.0)

    jobs = [encode(chunk) for chunk in chunks]
    if plan.audio is not None:
        audio = build_audio_command(plan.source, plan, staging)
        jobs.append(run_ffmpeg(audio, plan.duration, None, stall_timeout))
    await all_or_none(jobs)
    await asyncio.to_thread(assemble_chunks, staging, plan, chunks, chunk_root)


def chunk_dir(root: Path, chunk: Chunk) -> Path:
    return root / f"{chunk.index:05d}"


async def all_or_none(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` concurrently; the first to fail cancels the others (their ffmpeg stops) and its error is
    raised as is, not wrapped in an exception group: callers tell a full disk from a damaged source."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        # Shielded: a cancelled packager still waits until every ffmpeg it started has stopped.
        await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))


class BadChunk(SurgeError):
    """A chunk's output cannot join the title: encoded unlike the others (another ffmpeg or x264 build,
    say), so they cannot share one init segment, or not laid out as ``encode_video_chunk`` lays it out."""


def assemble_chunks(staging: Path, plan: PackagePlan, chunks: tuple[Chunk, ...], chunk_root: Path) -> None:
    """Join the chunks' renditions into ``staging/<rendition>/`` (blocking): one ``init.mp4`` (after checking
    that every chunk's is equivalent), the segments renumbered in order, one media playlist with their
    durations. Then the chunk directories are removed."""
    for rendition in plan.renditions:
        _assemble_rendition(staging / rendition.name, rendition.name, plan, chunks, chunk_root)
    shutil.rmtree(chunk_root)


def _assemble_rendition(
    target: Path, name: str, plan: PackagePlan, chunks: tuple[Chunk, ...], chunk_root: Path
) -> None:
    first_init = chunk_dir(chunk_root, chunks[0]) / name / INIT_NAME
    expected = track_setup(_read(first_init, chunks[0]))
    segments: list[Segment] = []
    for chunk in chunks:
        directory = chunk_dir(chunk_root, chunk) / name
        setup = track_setup(_read(directory / INIT_NAME, chunk))
        if setup != expected:
            differs = [
                field
                for field in ("timescale", "sample_description", "edit_list")
                if getattr(setup, field) != getattr(expected, field)
            ]
            raise BadChunk(
                f"{name}: chunk {chunk.index} was encoded unlike chunk 0 (its init segment has another "
                f"{' and '.join(differs)}); encode every chunk with the same ffmpeg and x264"
            )
        playlist = parse_media(_read(directory / PLAYLIST_NAME, chunk).decode())
        _check_chunk(name, chunk, playlist, plan)
        for segment in playlist.segments:
            if not is_safe_component(segment.uri):
                raise BadChunk(f"{name}: chunk {chunk.index} lists an invalid segment {segment.uri!r}")
            uri = SEGMENT_PATTERN % len(segments)
            (directory / segment.uri).rename(target / uri)
            segments.append(Segment(uri=uri, duration=segment.duration))
    first_init.rename(target / INIT_NAME)
    (target / PLAYLIST_NAME).write_text(
        render_media(MediaPlaylist(segments=tuple(segments), map_uri=INIT_NAME))
    )


def _read(path: Path, chunk: Chunk) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        # ffmpeg writes nothing for a chunk in which it finds no video.
        raise DamagedMedia(
            f"the source is truncated or damaged: {_span(chunk)} has no {path.parent.name}/{path.name}"
        ) from None


def _span(chunk: Chunk) -> str:
    return f"chunk {chunk.index} ({chunk.start:g}-{chunk.start + chunk.duration:g} s)"


def _check_chunk(name: str, chunk: Chunk, playlist: MediaPlaylist, plan: PackagePlan) -> None:
    """A chunk must fill its span: video that stops early would leave a gap in the title's timeline."""
    if playlist.duration <= 0:  # for a span without a frame, ffmpeg lists one empty segment
        raise DamagedMedia(f"the source is truncated or damaged: {_span(chunk)} of {name} has no video")
    slack = max(JOIN_SLACK_S, float(2 / plan.frame_rate))
    if not chunk.last and abs(playlist.duration - chunk.duration) > slack:
        raise DamagedMedia(
            f"the source is truncated or damaged: {_span(chunk)} of {name} holds "
            f"{playlist.duration:.2f} s of video"
        )
