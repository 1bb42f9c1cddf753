"""A title encoded in chunks, with real ffmpeg on a tiny source: 10 s in 4 s chunks of 2 s segments (three
chunks, two joins), checked by independent tools against the same title from one process."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import pickle
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import m3u8
import pytest

from media.errors import DamagedMedia, TranscodeFailed
from media.ladder import Rung
from tests.conftest import MakeSource, ffmpeg_pids_under
from tests.transcoder.checks import check_title
from tests.transcoder.test_package import leftovers
from transcoder.chunked import CHUNKS_DIR, BadChunk, ChunkJob, encode_video_chunk
from transcoder.chunks import Chunked, Encoding, SingleProcess
from transcoder.package import package_title
from transcoder.plan import PackageConfig

# veryfast, not ultrafast: B-frames put decode times before presentation times, as in real titles.
CHUNKED = PackageConfig(
    preset="veryfast",
    segment_duration=2,
    keyframe_interval=2,
    chunk_seconds=4,
    ladder=(Rung(320, 180, 200_000), Rung(416, 234, 300_000)),
)
SHAPE = {"width": 426, "height": 240, "duration": 10}
FPS = 30


def package(source: Path, out: Path, config: PackageConfig = CHUNKED, **options: Any) -> None:
    asyncio.run(package_title(source, out, config, **options))


@pytest.fixture(scope="module")
def titles(tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource) -> Iterator[dict[str, Path]]:
    """The same source packaged in chunks (two at once) and by one process."""
    source = make_source("chunks.mp4", **SHAPE)
    root = tmp_path_factory.mktemp("titles")
    encodings: list[Encoding] = []
    progress: list[float] = []
    package(source, root / "chunked", slots=2, on_encoding=encodings.append, on_progress=progress.append)
    package(source, root / "single", slots=1)
    [encoding] = encodings
    assert isinstance(encoding, Chunked) and len(encoding.chunks) == 3 and encoding.parallel == 2
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert leftovers(root) == []
    yield {"chunked": root / "chunked", "single": root / "single", "scratch": root}


def ffprobe(path: Path, *options: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", *options, "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def joined(directory: Path, scratch: Path) -> Path:
    """The rendition as one file: its init segment and every media segment in playlist order."""
    playlist = m3u8.load(str(directory / "index.m3u8"))
    path = scratch / f"{directory.parent.name}-{directory.name}.mp4"
    with path.open("wb") as out:
        out.write((directory / "init.mp4").read_bytes())
        for segment in playlist.segments:
            out.write((directory / segment.uri).read_bytes())
    return path


def test_chunked_title_passes_every_check_of_the_single_process(titles: dict[str, Path]) -> None:
    chunked = check_title(titles["chunked"], titles["scratch"], target=2)
    single = check_title(titles["single"], titles["scratch"], target=2)
    assert chunked["segments"] == single["segments"] == [2.0] * 5
    assert [v["resolution"] for v in chunked["variants"]] == [(320, 180), (416, 234)]
    assert chunked["title"]["duration"] == single["title"]["duration"] == 10.0
    assert chunked["title"]["codecs"] == single["title"]["codecs"]
    for rendition in ("180p", "234p"):
        assert sorted(p.name for p in (titles["chunked"] / rendition).iterdir()) == sorted(
            p.name for p in (titles["single"] / rendition).iterdir()
        )
    assert not (titles["chunked"] / ".chunks").exists()


def test_the_whole_chunked_title_decodes_without_an_error(titles: dict[str, Path]) -> None:
    done = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(titles["chunked"] / "master.m3u8"),
            "-map",
            "0",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("rendition", ["180p", "234p"])
def test_decode_times_run_on_across_the_joins(titles: dict[str, Path], rendition: str) -> None:
    """tfdt (baseMediaDecodeTime) of each segment, as ffprobe reads it from init + that segment alone, is
    where the segments before it end: the joins at 4 s and 8 s included."""
    directory = titles["chunked"] / rendition
    playlist = m3u8.load(str(directory / "index.m3u8"))
    starts = []
    for segment in playlist.segments:
        alone = titles["scratch"] / f"alone-{rendition}.mp4"
        alone.write_bytes((directory / "init.mp4").read_bytes() + (directory / segment.uri).read_bytes())
        packets = ffprobe(alone, "-show_packets", "-read_intervals", "%+#1")["packets"]
        starts.append(float(packets[0]["dts_time"]))
    offset = starts[0]
    ends = [sum(s.duration for s in playlist.segments[:i]) for i in range(len(playlist.segments))]
    assert [round(start - offset, 3) for start in starts] == [round(end, 3) for end in ends]


def frame_times(directory: Path, scratch: Path) -> list[float]:
    """Presentation times of every frame of a rendition, from its start."""
    probed = ffprobe(joined(directory, scratch), "-show_frames", "-select_streams", "v")
    times = [float(frame["pts_time"]) for frame in probed["frames"]]
    return [round(time - times[0], 4) for time in times]


@pytest.mark.parametrize("rendition", ["180p", "234p"])
def test_every_frame_once_in_order_across_the_joins(titles: dict[str, Path], rendition: str) -> None:
    times = frame_times(titles["chunked"] / rendition, titles["scratch"])
    assert len(times) == SHAPE["duration"] * FPS
    # No gap, no repeat, no reordering at a join.
    assert all(abs(b - a - 1 / FPS) < 1e-3 for a, b in itertools.pairwise(times))
    assert times == frame_times(titles["single"] / rendition, titles["scratch"])
    # Key frames on the 2 s grid, the joins included.
    whole = joined(titles["chunked"] / rendition, titles["scratch"])
    keys = ffprobe(whole, "-show_frames", "-select_streams", "v", "-skip_frame", "nokey")["frames"]
    key_times = [float(f["pts_time"]) - float(keys[0]["pts_time"]) for f in keys]
    assert [round(t, 3) for t in key_times] == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_a_fractional_frame_rate_keeps_every_frame_on_its_grid(
    make_source: MakeSource, tmp_path: Path
) -> None:
    """At 29.97 fps a join (4 s) falls between two frame instants: each chunk still times its frames on
    the title's grid, as one process does, not on one that starts at the join."""
    source = make_source("ntsc.mp4", width=426, height=240, duration=10, frame_rate="30000/1001")
    package(source, tmp_path / "chunked", slots=3)
    package(source, tmp_path / "single", slots=1)
    chunked = check_title(tmp_path / "chunked", tmp_path, target=3)
    assert chunked["segments"] == check_title(tmp_path / "single", tmp_path, target=3)["segments"]
    times = frame_times(tmp_path / "chunked" / "234p", tmp_path)
    assert times == frame_times(tmp_path / "single" / "234p", tmp_path)
    assert all(abs(b - a - 1001 / 30000) < 1e-3 for a, b in itertools.pairwise(times))


def test_a_source_that_cannot_seek_is_not_chunked(make_source: MakeSource, tmp_path: Path) -> None:
    """MPEG-TS seeks by byte position and may land past the instant asked for: one process instead."""
    source = make_source("chunks.ts", **SHAPE)
    encodings: list[Encoding] = []
    package(source, tmp_path / "title", slots=3, on_encoding=encodings.append)
    assert encodings == [SingleProcess()]
    assert (tmp_path / "title" / "master.m3u8").is_file()


def test_audio_is_one_rendition_for_the_whole_title(titles: dict[str, Path]) -> None:
    """Encoded once, not per chunk: the very bytes of the single process, and no gap anywhere."""
    chunked, single = titles["chunked"] / "audio", titles["single"] / "audio"
    names = sorted(p.name for p in single.iterdir())
    assert sorted(p.name for p in chunked.iterdir()) == names
    for name in names:
        assert (chunked / name).read_bytes() == (single / name).read_bytes(), name
    packets = ffprobe(joined(chunked, titles["scratch"]), "-show_packets")["packets"]
    times = [float(packet["pts_time"]) for packet in packets]
    steps = {round(b - a, 5) for a, b in itertools.pairwise(times)}
    assert steps == {round(1024 / 48_000, 5)}  # one AAC frame after the other, throughout
    assert times[-1] > SHAPE["duration"] - 0.1


def test_i_frame_playlists_point_at_each_key_frame(titles: dict[str, Path]) -> None:
    for rendition in ("180p", "234p"):
        directory = titles["chunked"] / rendition
        iframes = m3u8.load(str(directory / "iframes.m3u8"))
        assert len(iframes.segments) == 5
        for segment in iframes.segments:
            length, offset = (int(x) for x in segment.byterange.split("@"))
            clip = titles["scratch"] / "iframe.mp4"
            clip.write_bytes(
                (directory / "init.mp4").read_bytes() + (directory / segment.uri).read_bytes()[:length]
            )
            packets = ffprobe(clip, "-show_packets")["packets"]
            assert offset == 0 and len(packets) == 1 and packets[0]["flags"].startswith("K")


def test_a_chunk_runner_elsewhere(make_source: MakeSource, tmp_path: Path) -> None:
    """A runner as on another machine: the job crosses a process boundary (pickled), the worker reads its
    own copy of the source and writes its own directory, which is then copied into place."""
    source = make_source("chunks.mp4", **SHAPE)
    worker = tmp_path / "worker"
    worker.mkdir()
    worker_source = worker / "source.mp4"
    shutil.copy(source, worker_source)
    seen: list[int] = []

    async def elsewhere(job: ChunkJob, out_dir: Path) -> None:
        received: ChunkJob = pickle.loads(pickle.dumps(job))
        seen.append(received.chunk.index)
        scratch = worker / f"chunk-{received.chunk.index}"
        await encode_video_chunk(worker_source, received.chunk, received.plan, scratch)
        await asyncio.to_thread(shutil.copytree, scratch, out_dir)

    progress: list[float] = []
    out = tmp_path / "title"
    package(source, out, slots=3, chunk_runner=elsewhere, on_progress=progress.append)
    assert sorted(seen) == [0, 1, 2]
    assert check_title(out, tmp_path, target=2)["segments"] == [2.0] * 5
    assert progress[-1] == 1.0 and progress == sorted(progress) and len(set(progress)) >= 3


def test_chunks_encoded_unlike_are_refused(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("chunks.mp4", **SHAPE)

    async def mixed(job: ChunkJob, out_dir: Path) -> None:
        plan = dataclasses.replace(job.plan, preset="ultrafast") if job.chunk.index == 1 else job.plan
        await encode_video_chunk(source, job.chunk, plan, out_dir)

    with pytest.raises(BadChunk, match=r"chunk 1 was encoded unlike chunk 0 .*sample_description"):
        package(source, tmp_path / "title", slots=2, chunk_runner=mixed)
    assert not (tmp_path / "title").exists()
    assert leftovers(tmp_path) == []


def test_a_chunk_listing_a_path_outside_its_directory_is_refused(
    make_source: MakeSource, tmp_path: Path
) -> None:
    """A runner's output is checked before anything is moved: segment names are plain file names."""
    source = make_source("chunks.mp4", **SHAPE)
    bait = tmp_path / "bait.m4s"
    bait.write_bytes(b"not to be moved")

    async def tampered(job: ChunkJob, out_dir: Path) -> None:
        await encode_video_chunk(source, job.chunk, job.plan, out_dir)
        if job.chunk.index == 2:
            playlist = out_dir / "180p" / "index.m3u8"
            escape = "../" * 6 + str(bait.relative_to(bait.anchor))
            playlist.write_text(playlist.read_text().replace("seg_00000.m4s", escape))

    with pytest.raises(BadChunk, match=r"180p: chunk 2 lists an invalid segment '\.\./"):
        package(source, tmp_path / "title", slots=2, chunk_runner=tampered)
    assert bait.read_bytes() == b"not to be moved"
    assert leftovers(tmp_path) == []


def test_a_failing_chunk_stops_the_others(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("chunks.mp4", **SHAPE)

    async def failing(job: ChunkJob, out_dir: Path) -> None:
        where = tmp_path / "gone.mp4" if job.chunk.index == 1 else source
        await encode_video_chunk(where, job.chunk, job.plan, out_dir)

    # ffmpeg's own failure, as is (not wrapped in an exception group), and nothing left behind.
    with pytest.raises(TranscodeFailed, match=r"gone\.mp4"):
        package(source, tmp_path / "title", slots=3, chunk_runner=failing)
    assert leftovers(tmp_path) == []
    assert ffmpeg_pids_under(tmp_path) == []


def chunk_encoders_under(directory: Path) -> int:
    """How many chunk encoders (ffmpeg writing into a chunk directory) run under ``directory`` now."""
    count = 0
    for pid in ffmpeg_pids_under(directory):
        try:
            count += f"/{CHUNKS_DIR}/" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
    return count


def test_chunks_run_in_parallel_within_the_bound_and_stop_on_cancel(
    make_source: MakeSource, tmp_path: Path
) -> None:
    source = make_source("long.mp4", width=640, height=360, duration=20)
    out = tmp_path / "title"
    # Five 4 s chunks of slow encoding, two at once.
    config = dataclasses.replace(CHUNKED, preset="veryslow", ladder=PackageConfig().ladder)

    async def cancel_midway() -> None:
        task = asyncio.create_task(package_title(source, out, config, slots=2))
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while max(seen, default=0) < 2:
            assert time.monotonic() < deadline and not task.done(), f"never two chunks at once: {seen}"
            seen.append(chunk_encoders_under(tmp_path))
            await asyncio.sleep(0.05)
        for _ in range(20):
            seen.append(chunk_encoders_under(tmp_path))
            await asyncio.sleep(0.05)
        assert max(seen) == 2, seen
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert ffmpeg_pids_under(tmp_path) == []


def test_a_truncated_source_in_chunks_leaves_nothing(make_source: MakeSource, tmp_path: Path) -> None:
    whole = make_source("chunks.mp4", **SHAPE)
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(faststart)],
        check=True,
        timeout=60,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    # The chunks after the cut come back short or empty: a gap in the timeline is never published.
    with pytest.raises(DamagedMedia, match=r"truncated or damaged: chunk \d \(\d+-\d+ s\) of 180p"):
        package(cut, tmp_path / "title", slots=2)
    assert not (tmp_path / "title").exists()
    assert leftovers(tmp_path) == []
