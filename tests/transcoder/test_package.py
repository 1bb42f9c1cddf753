"""Real ffmpeg on tiny generated sources: package, then check with independent tools."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from media.errors import AlreadyExists, DamagedMedia, InsufficientStorage, UnsupportedMedia
from media.ladder import Rung
from media.probe import probe_source
from tests.conftest import MakeSource, ffmpeg_pids_under
from tests.origin.conftest import small_filesystem
from tests.transcoder.checks import check_title
from transcoder.package import package_title
from transcoder.plan import PackageConfig

FAST = PackageConfig(preset="ultrafast")


def package(source: Path, out: Path, config: PackageConfig = FAST, **options: object) -> None:
    asyncio.run(package_title(source, out, config, **options))  # type: ignore[arg-type]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".staging-" in p.name or ".old-" in p.name)


def test_the_title_is_dated_by_the_given_clock(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("dated.mp4", width=320, height=240, duration=2)
    paris = dt.timezone(dt.timedelta(hours=1))
    package(source, tmp_path / "title", clock=lambda: dt.datetime(2026, 3, 1, 13, 30, 5, 900, tzinfo=paris))
    created = json.loads((tmp_path / "title" / "title.json").read_text())["created"]
    assert created == "2026-03-01T12:30:05+00:00"  # in UTC, to the second


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        ("with-audio.mp4", {"width": 640, "height": 360, "duration": 8}, [(416, 234), (640, 360)]),
        (
            "no-audio.mp4",
            {"width": 640, "height": 360, "duration": 4, "audio": False},
            [(416, 234), (640, 360)],
        ),
        ("portrait.mp4", {"width": 360, "height": 640, "duration": 3}, [(234, 416), (360, 640)]),
        (
            "odd.mp4",
            {"width": 854, "height": 481, "duration": 3, "pattern": "testsrc", "pix_fmt": "yuv444p"},
            [(416, 234), (640, 360), (768, 432)],
        ),
        ("rotated.mp4", {"width": 320, "height": 240, "duration": 2, "display_rotation": 90}, [(234, 312)]),
        ("one-second.mp4", {"width": 426, "height": 240, "duration": 1}, [(416, 234)]),
        ("ten-bit.mp4", {"width": 426, "height": 240, "duration": 2, "pix_fmt": "yuv420p10le"}, [(416, 234)]),
        ("yuv444.mp4", {"width": 426, "height": 240, "duration": 2, "pix_fmt": "yuv444p"}, [(416, 234)]),
        ("tiny.mp4", {"width": 160, "height": 120, "duration": 2}, [(160, 120)]),
    ],
)
def test_packaged_title_passes_every_rule(
    make_source: MakeSource,
    tmp_path: Path,
    name: str,
    shape: dict[str, object],
    expected: list[tuple[int, int]],
) -> None:
    source = make_source(name, **shape)
    out = tmp_path / "title"
    progress: list[float] = []
    package(source, out, name="Test title", title_id="test-title", on_progress=progress.append)
    facts = check_title(out, tmp_path)
    assert [v["resolution"] for v in facts["variants"]] == expected
    assert facts["title"]["id"] == "test-title" and facts["title"]["name"] == "Test title"
    assert abs(facts["title"]["duration"] - float(shape["duration"])) < 0.2  # type: ignore[arg-type]
    assert (facts["title"]["audio"] is None) == (shape.get("audio") is False)
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    assert leftovers(tmp_path) == []


def test_one_source_name_in_two_shapes_gives_two_files(make_source: MakeSource) -> None:
    # The session's sources are shared by every test a worker runs, in whatever order they come.
    short = make_source("shaped.mp4", width=160, height=120, duration=2)
    longer = make_source("shaped.mp4", width=160, height=120, duration=3)
    assert short != longer and short.name == longer.name == "shaped.mp4"
    assert make_source("shaped.mp4", duration=2, height=120, width=160) == short
    assert [round(probe_source(p).duration) for p in (short, longer)] == [2, 3]


def test_segments_are_cut_at_the_target(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    package(source, tmp_path / "six")
    assert check_title(tmp_path / "six", tmp_path)["segments"] == [6.0, 2.0]
    config = PackageConfig(preset="ultrafast", segment_duration=2, keyframe_interval=1)
    package(source, tmp_path / "two", config)
    assert check_title(tmp_path / "two", tmp_path, target=2)["segments"] == [2.0, 2.0, 2.0, 2.0]


def test_custom_ladder(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    config = PackageConfig(preset="ultrafast", ladder=(Rung(320, 180, 200_000),))
    package(source, tmp_path / "title", config)
    facts = check_title(tmp_path / "title", tmp_path)
    assert [v["resolution"] for v in facts["variants"]] == [(320, 180)]


def test_existing_destination_is_refused_then_replaced(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    out = tmp_path / "title"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(AlreadyExists):
        package(source, out)
    assert (out / "keep.txt").read_text() == "precious"
    package(source, out, replace=True)
    assert not (out / "keep.txt").exists()
    check_title(out, tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"this is a text file, not a video\n" * 10, UnsupportedMedia, "not a readable video file"),
        (b"", UnsupportedMedia, "empty"),
    ],
)
def test_bad_sources_leave_nothing(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    source = tmp_path / "upload.mp4"
    source.write_bytes(content)
    with pytest.raises(error, match=message):
        package(source, tmp_path / "title")
    assert not (tmp_path / "title").exists()
    assert leftovers(tmp_path) == []


def test_truncated_mp4_leaves_nothing(make_source: MakeSource, tmp_path: Path) -> None:
    whole = make_source("with-audio.mp4", width=640, height=360, duration=8)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(DamagedMedia, match="truncated"):
        package(cut, tmp_path / "title")
    assert not (tmp_path / "title").exists()
    assert leftovers(tmp_path) == []


def test_truncated_faststart_mp4_is_caught_after_decoding(make_source: MakeSource, tmp_path: Path) -> None:
    # The index is at the front, so ffprobe is happy; only decoding shows that the media stops early.
    whole = make_source("with-audio.mp4", width=640, height=360, duration=8)
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(faststart)],
        check=True,
        timeout=60,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 3])
    with pytest.raises(DamagedMedia, match="truncated or damaged"):
        package(cut, tmp_path / "title")
    assert not (tmp_path / "title").exists()
    assert leftovers(tmp_path) == []


def test_cancel_stops_ffmpeg_and_removes_staging(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("long.mp4", width=640, height=360, duration=20)
    out = tmp_path / "title"

    async def cancel_midway() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(
            package_title(source, out, PackageConfig(preset="veryslow"), on_progress=lambda _f: started.set())
        )
        await asyncio.wait_for(started.wait(), 60)
        assert ffmpeg_pids_under(tmp_path)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert ffmpeg_pids_under(tmp_path) == []


def test_staging_root_is_used_and_cleaned(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    staging = tmp_path / "staging"
    (tmp_path / "titles").mkdir()
    package(source, tmp_path / "titles" / "abc", staging_root=staging)
    assert list(staging.iterdir()) == []
    assert (tmp_path / "titles" / "abc" / "master.m3u8").is_file()


def test_a_full_disk_is_reported_as_such(make_source: MakeSource, tmp_path: Path) -> None:
    """ENOSPC while packaging used to surface as whatever broke first ("a playlist must start with
    #EXTM3U"); it is named, and the staging directory is gone."""
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    with small_filesystem(tmp_path / "small", 256 * 1024) as small:
        with pytest.raises(InsufficientStorage, match="the disk is full") as raised:
            package(source, small / "title")
        assert list(small.iterdir()) == []
    assert raised.value.status == 507
