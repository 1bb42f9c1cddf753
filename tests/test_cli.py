"""The ``surge`` command as a user runs it: a real subprocess, real files, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MakeSource
from tests.transcoder.checks import check_title

SURGE = [sys.executable, "-m", "surge.cli"]


def surge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SURGE, *args], capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("surge: error: ") and fragment in lines[-1], done.stderr
    assert "Traceback" not in done.stderr


def test_transcode(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("with-audio.mp4", width=640, height=360, duration=8)
    out = tmp_path / "title"
    done = surge("transcode", str(source), "--out", str(out), "--preset", "ultrafast", "--name", "Demo")
    assert done.returncode == 0, done.stderr
    assert f"master: {out / 'master.m3u8'}" in done.stdout
    assert "100%" in done.stderr  # the progress bar ran to the end
    facts = check_title(out, tmp_path)
    assert facts["title"]["name"] == "Demo"


def test_transcode_errors_are_one_line(make_source: MakeSource, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert_one_line_error(surge("transcode", str(text), "--out", str(tmp_path / "a")), "not a readable video")
    assert not (tmp_path / "a").exists()
    assert_one_line_error(
        surge("transcode", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "b")), "no such"
    )
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    assert_one_line_error(
        surge("transcode", str(source), "--out", str(tmp_path / "c"), "--ladder", "640x360"),
        "invalid ladder rung",
    )
    assert_one_line_error(
        surge("transcode", str(source), "--out", str(tmp_path / "d"), "--segment-duration", "5"), "multiple"
    )
    assert_one_line_error(
        surge("transcode", str(source), "--out", str(tmp_path / "no" / "parent")), "is not a directory"
    )


def test_transcode_refuses_an_existing_destination_unless_forced(
    make_source: MakeSource, tmp_path: Path
) -> None:
    source = make_source("tiny.mp4", width=160, height=120, duration=2)
    out = tmp_path / "title"
    out.mkdir()
    assert_one_line_error(surge("transcode", str(source), "--out", str(out), "--quiet"), "already exists")
    done = surge("transcode", str(source), "--out", str(out), "--quiet", "--force", "--preset", "ultrafast")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet: no bar
    check_title(out, tmp_path)


def test_ctrl_c_stops_ffmpeg_and_leaves_nothing(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("long.mp4", width=640, height=360, duration=20)
    out = tmp_path / "title"
    process = subprocess.Popen(
        [*SURGE, "transcode", str(source), "--out", str(out), "--preset", "veryslow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".title.staging-") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline and process.poll() is None, "packaging never started"
            time.sleep(0.05)
        time.sleep(1.0)  # let ffmpeg get going
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "surge: interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_packages_a_sample_into_the_library(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = surge("demo", "--data", str(data), "--duration", "3", "--quiet", timeout=300)
    assert done.returncode == 0, done.stderr
    title = data / "titles" / "demo"
    assert f"master: {title / 'master.m3u8'}" in done.stdout
    facts = check_title(title, tmp_path)
    assert len(facts["variants"]) == 5  # a 720p sample: 234p up to 720p
    assert (data / "sources" / "demo" / "source").is_file()
    again = surge("demo", "--data", str(data), "--quiet")
    assert again.returncode == 0 and "already packaged" in again.stdout


@pytest.mark.parametrize("args", [[], ["nonsense"], ["transcode"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = surge(*args)
    assert done.returncode == 2
    assert "usage: surge" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_the_commands() -> None:
    done = surge("--help")
    assert done.returncode == 0
    assert "transcode" in done.stdout and "demo" in done.stdout
