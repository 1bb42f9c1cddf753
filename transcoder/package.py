"""Package one title: probe → plan → ffmpeg in a staging directory (one process, or chunks assembled by
``transcoder.chunked``) → playlists from measured facts → atomic rename into place. Nothing half-written
ever appears at the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from media.errors import AlreadyExists, DamagedMedia, InsufficientStorage, InvalidInput, TranscodeFailed
from media.hls import MediaPlaylist, parse_media, render_master, render_media
from media.hls.build import (
    Bitrates,
    MeasuredAudio,
    MeasuredVideo,
    build_iframe_playlist,
    build_master,
    measure_bitrates,
)
from media.ids import new_title_id, validate_title_id
from media.mp4 import aac_codec_string, avc_codec_string, first_sample
from media.probe import SourceFacts, probe_source
from media.title import AudioInfo, RenditionInfo, TitleInfo
from transcoder.chunked import ChunkRunner, encode_chunked
from transcoder.chunks import Chunked, Encoding, SingleProcess, choose_encoding, seeks_accurately
from transcoder.command import INIT_NAME, PLAYLIST_NAME, build_command
from transcoder.plan import PackageConfig, PackagePlan, make_plan
from transcoder.run import ProgressCallback, run_ffmpeg

MASTER_NAME = "master.m3u8"
IFRAMES_NAME = "iframes.m3u8"
TITLE_JSON = "title.json"
# The packaged duration may fall short of the probed one by a frame or an audio packet, not by more.
MIN_DURATION_SHARE = 0.9
# A segment may run past the target duration by at most this much (Apple HLS authoring spec 7.5).
SEGMENT_SLACK_S = 0.5


@dataclass(frozen=True)
class _Rendition:
    playlist: MediaPlaylist
    codecs: str
    bitrates: Bitrates


def _read_rendition(directory: Path, *, video: bool) -> _Rendition:
    playlist = parse_media((directory / PLAYLIST_NAME).read_text())
    if not playlist.segments:
        raise DamagedMedia(f"ffmpeg wrote no segments for {directory.name}")
    init = (directory / INIT_NAME).read_bytes()
    codecs = avc_codec_string(init) if video else aac_codec_string(init)
    sizes = [(directory / segment.uri).stat().st_size for segment in playlist.segments]
    bitrates = measure_bitrates(sizes, [segment.duration for segment in playlist.segments])
    # Re-rendered by our model: the version and tags follow what the playlist really uses.
    playlist = MediaPlaylist(segments=playlist.segments, map_uri=INIT_NAME)
    return _Rendition(playlist=playlist, codecs=codecs, bitrates=bitrates)


def write_playlist(path: Path, text: str) -> None:
    """The playlist and its gzip twin, which the origin serves to clients that accept gzip."""
    data = text.encode()
    path.write_bytes(data)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


def _check_segments(name: str, playlist: MediaPlaylist, plan: PackagePlan) -> None:
    longest = max(segment.duration for segment in playlist.segments)
    if longest > plan.segment_duration + SEGMENT_SLACK_S:
        raise DamagedMedia(
            f"{name}: a segment lasts {longest:.2f} s, over the {plan.segment_duration} s target + "
            f"{SEGMENT_SLACK_S} s (source with irregular timestamps?)"
        )


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def finish_title(
    staging: Path, plan: PackagePlan, title_id: str, name: str, created: dt.datetime
) -> TitleInfo:
    """Write media, I-frame and master playlists and title.json from what ffmpeg really produced;
    ``created`` (an aware time) is the title's creation date."""
    measured_videos = []
    rendition_infos = []
    video_durations = []
    for rendition in plan.renditions:
        directory = staging / rendition.name
        read = _read_rendition(directory, video=True)
        _check_segments(rendition.name, read.playlist, plan)
        ends = []
        for segment in read.playlist.segments:
            sample = first_sample((directory / segment.uri).read_bytes())
            if not sample.is_sync:
                raise DamagedMedia(f"{rendition.name}/{segment.uri} does not start with a key frame")
            ends.append(sample.end)
        video_durations.append(read.playlist.duration)
        iframes = build_iframe_playlist(read.playlist, ends)
        write_playlist(directory / PLAYLIST_NAME, render_media(read.playlist))
        write_playlist(directory / IFRAMES_NAME, render_media(iframes))
        durations = [segment.duration for segment in read.playlist.segments]
        measured_videos.append(
            MeasuredVideo(
                uri=f"{rendition.name}/{PLAYLIST_NAME}",
                iframe_uri=f"{rendition.name}/{IFRAMES_NAME}",
                width=rendition.width,
                height=rendition.height,
                frame_rate=plan.frame_rate,
                codecs=read.codecs,
                bitrates=read.bitrates,
                iframe_bitrates=measure_bitrates(ends, durations),
            )
        )
        rendition_infos.append(
            RenditionInfo(
                name=rendition.name,
                width=rendition.width,
                height=rendition.height,
                frame_rate=round(float(plan.frame_rate), 3),
                codecs=read.codecs,
                bandwidth=read.bitrates.peak,
                average_bandwidth=read.bitrates.average,
                segments=len(read.playlist.segments),
            )
        )
    video_duration = min(video_durations)
    if video_duration < plan.duration * MIN_DURATION_SHARE:
        raise DamagedMedia(
            f"the source is truncated or damaged: only {video_duration:.1f} s of its "
            f"{plan.duration:.1f} s could be read"
        )
    measured_audio = None
    audio_info = None
    if plan.audio is not None:
        read = _read_rendition(staging / plan.audio.name, video=False)
        write_playlist(staging / plan.audio.name / PLAYLIST_NAME, render_media(read.playlist))
        measured_audio = MeasuredAudio(
            uri=f"{plan.audio.name}/{PLAYLIST_NAME}",
            codecs=read.codecs,
            bitrates=read.bitrates,
            language=plan.audio.language,
            name="Main",
            channels=plan.audio.channels,
        )
        audio_info = AudioInfo(
            codecs=read.codecs,
            language=plan.audio.language,
            channels=plan.audio.channels,
            bandwidth=read.bitrates.peak,
            average_bandwidth=read.bitrates.average,
            segments=len(read.playlist.segments),
        )
    master = build_master(measured_videos, measured_audio)
    write_playlist(staging / MASTER_NAME, render_master(master))
    info = TitleInfo(
        id=title_id,
        name=name,
        duration=round(video_duration, 3),
        created=created.astimezone(dt.UTC).isoformat(timespec="seconds"),
        renditions=tuple(rendition_infos),
        audio=audio_info,
        segment_duration=plan.segment_duration,
        source=_source_summary(plan.source_facts),
    )
    (staging / TITLE_JSON).write_text(info.to_json())
    return info


def _source_summary(facts: SourceFacts) -> dict[str, object]:
    return {
        "width": facts.display_width,
        "height": facts.display_height,
        "duration": round(facts.duration, 3),
        "frame_rate": round(float(facts.frame_rate), 3),
        "video_codec": facts.video_codec,
        "pix_fmt": facts.pix_fmt,
        "audio_codec": facts.audio_codec,
        "rotation": facts.rotation,
    }


def publish(staging: Path, destination: Path, *, replace: bool) -> None:
    """Move a finished staging directory to ``destination`` by rename (same filesystem, atomic)."""
    for path in staging.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    if destination.exists() or destination.is_symlink():
        if not replace:
            raise AlreadyExists(f"{destination} already exists (use --force to replace it)")
        trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
        destination.rename(trash / destination.name)
        staging.rename(destination)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(destination)
    with contextlib.suppress(OSError):
        directory = os.open(destination.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# Less free space than this after a failure means the failure was most likely the full disk.
NEARLY_FULL_BYTES = 1024 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def out_of_space(error: BaseException, free_bytes: int | None) -> bool:
    """Did packaging fail because the disk filled up? An OSError that says so, ffmpeg saying so, or
    another failure with the disk (nearly) full."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    if isinstance(error, TranscodeFailed) and "No space left on device" in error.stderr_tail:
        return True
    return free_bytes is not None and free_bytes < NEARLY_FULL_BYTES


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _make_staging(plan: PackagePlan, destination: Path, root: Path) -> Path:
    """A fresh directory beside where the title will live (same filesystem: publish is a rename)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=root))
    make_output_dirs(plan, staging)
    return staging


def make_output_dirs(plan: PackagePlan, directory: Path) -> None:
    """The directory of every rendition ffmpeg writes into (it creates none itself)."""
    for name in [r.name for r in plan.renditions] + ([plan.audio.name] if plan.audio else []):
        (directory / name).mkdir(exist_ok=True)


def plan_title(source: Path, config: PackageConfig) -> PackagePlan:
    """Probe ``source`` and decide what to encode (blocking: run it off the event loop)."""
    return make_plan(source, probe_source(source), config)


async def encode_title(
    plan: PackagePlan,
    directory: Path,
    config: PackageConfig,
    on_progress: ProgressCallback | None = None,
    encoding: Encoding | None = None,
    chunk_runner: ChunkRunner | None = None,
) -> None:
    """ffmpeg's output for ``plan`` into ``directory`` (renditions, segments, raw playlists), which
    ``finish_title`` then checks and completes; a worker on another machine runs this part alone.
    ``encoding`` (default one process) chooses between one ffmpeg and chunks run by ``chunk_runner``."""
    await asyncio.to_thread(make_output_dirs, plan, directory)
    match encoding or SingleProcess():
        case SingleProcess():
            command = build_command(plan, directory)
            await run_ffmpeg(command, plan.duration, on_progress, config.stall_timeout)
        case Chunked(chunks=chunks, parallel=parallel):
            await encode_chunked(plan, chunks, directory, parallel=parallel, runner=chunk_runner,
                                 on_progress=on_progress, stall_timeout=config.stall_timeout)  # fmt: skip


def _check_destination(destination: Path, replace: bool) -> None:
    if (destination.exists() or destination.is_symlink()) and not replace:
        raise AlreadyExists(f"{destination} already exists (use --force to replace it)")
    if not destination.parent.is_dir():
        raise InvalidInput(f"{destination.parent} is not a directory")


async def package_title(
    source: Path,
    destination: Path,
    config: PackageConfig | None = None,
    *,
    name: str | None = None,
    title_id: str | None = None,
    staging_root: Path | None = None,
    replace: bool = False,
    on_progress: ProgressCallback | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    slots: int = 1,
    chunk_runner: ChunkRunner | None = None,
    on_encoding: Callable[[Encoding], None] | None = None,
) -> TitleInfo:
    """Package ``source`` into ``destination``; on any failure or cancellation nothing is left behind.

    ``clock`` dates the title (``created`` in title.json). ``slots``: packager slots this title may use,
    its own included. With more than one, a title longer than two chunks (``config.chunk_seconds``) has
    its video encoded in chunks, that many at once, by ``chunk_runner`` (default: ffmpeg processes on
    this machine), and is assembled here. ``on_encoding`` hears the choice once it is made, before any
    encoding (e.g. to give back the slots a single process leaves unused).
    """
    config = config or PackageConfig()
    await asyncio.to_thread(_check_destination, destination, replace)
    facts = await asyncio.to_thread(probe_source, source)
    plan = make_plan(source, facts, config)
    encoding = choose_encoding(
        plan.duration,
        plan.segment_duration,
        config.chunk_seconds,
        slots,
        seekable=seeks_accurately(facts.container),
    )
    if on_encoding is not None:
        on_encoding(encoding)
    title_name = name or source.stem
    title_id = validate_title_id(title_id) if title_id else new_title_id(title_name)
    staging = await asyncio.to_thread(_make_staging, plan, destination, staging_root or destination.parent)
    try:
        await encode_title(plan, staging, config, on_progress, encoding, chunk_runner)
        info = await asyncio.to_thread(finish_title, staging, plan, title_id, title_name, clock())
        await asyncio.to_thread(publish, staging, destination, replace=replace)
    except BaseException as error:
        # A full disk shows up as whatever broke first (ffmpeg exits 0 with a cut playlist, or a write
        # error): name the cause instead. Measured before the staging directory is removed.
        full = isinstance(error, Exception) and out_of_space(error, _free_bytes(staging.parent))
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, staging, True))
        if full:
            raise InsufficientStorage(
                f"the disk is full (no space left in {staging.parent}): {error}"
            ) from error
        raise
    if on_progress is not None:
        on_progress(1.0)
    return info
