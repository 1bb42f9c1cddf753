"""The ``surge`` command as a user runs it: a real subprocess, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
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


def test_transcode_in_chunks(make_source: MakeSource, tmp_path: Path) -> None:
    source = make_source("chunks.mp4", width=426, height=240, duration=10)
    out = tmp_path / "title"
    options = ["--preset", "ultrafast", "--segment-duration", "2", "--chunk-seconds", "4"]
    done = surge("transcode", str(source), "--out", str(out), *options, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "encoding the video in 3 chunks, 2 at once" in done.stderr
    assert check_title(out, tmp_path, target=2)["segments"] == [2.0] * 5
    # One job, or chunking off: one process.
    for more in (["--jobs", "1"], ["--chunk-seconds", "0", "--jobs", "2"]):
        done = surge("transcode", str(source), "--out", str(out), "--force", *options, *more)
        assert done.returncode == 0 and "encoding the video in" not in done.stderr, done.stderr


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
        surge("transcode", str(source), "--out", str(tmp_path / "e"), "--audio-language", "klingon!"),
        "not a language tag",
    )
    assert_one_line_error(
        surge("transcode", str(source), "--out", str(tmp_path / "f"), "--chunk-seconds", "-1"), "chunk length"
    )
    assert_one_line_error(
        surge("transcode", str(source), "--out", str(tmp_path / "g"), "--jobs", "0"), "--jobs"
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


def _run_demo(data: Path) -> tuple[str, str]:
    """Start ``surge demo``, wait for the demo title to be served, stop it; returns (stdout, stderr)."""
    process = subprocess.Popen(
        [
            *SURGE,
            "demo",
            "--data",
            str(data),
            "--duration",
            "3",
            "--quiet",
            "--port",
            "0",
            "--fleet-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("surge demo is running"), lines
        fleet = lines[2].split()[-1]
        player, master = lines[1].split()[-1], lines[3].split()[-1]
        assert fleet.startswith("http://127.0.0.1:") and player == f"{fleet}player/#demo"
        assert master == f"{fleet}titles/demo/master.m3u8"
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"{fleet}titles", timeout=5) as response:
                titles = json.load(response)["titles"]
            if [t["id"] for t in titles] == ["demo"]:
                break
            assert time.monotonic() < deadline, titles
            time.sleep(0.1)
        with urllib.request.urlopen(master, timeout=5) as response:
            text = response.read().decode()
        # The router's master points at an edge, which serves the media.
        assert "#EXT-X-STREAM-INF" in text and "#EXT-X-CONTENT-STEERING" in text
        variant = next(line for line in text.splitlines() if line.startswith("http://"))
        with urllib.request.urlopen(variant, timeout=5) as response:
            assert response.headers["X-Served-By"] == "edge-1" and b"#EXTINF" in response.read()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    return "".join(lines) + stdout, stderr


def test_demo_packages_a_sample_and_serves_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, stderr = _run_demo(data)
    assert "generating a 3 s 720p sample" in stderr
    facts = check_title(data / "titles" / "demo", tmp_path)
    assert len(facts["variants"]) == 5  # a 720p sample: 234p up to 720p
    assert (data / "sources" / "demo" / "source").is_file()
    _, stderr = _run_demo(data)  # a second run reuses the title
    assert "generating" not in stderr and "packaged" not in stderr


def test_upload_waits_for_packaging(make_source: MakeSource, tmp_path: Path) -> None:
    from tests.origin.conftest import TOKEN, OriginProcess

    server = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    try:
        source = make_source("tiny.mp4", width=160, height=120, duration=2)
        done = surge(
            "upload", str(source), "--server", server.url, "--token", TOKEN, "--wait", "--name", "Tiny"
        )
        assert done.returncode == 0, done.stderr
        assert "uploaded tiny.mp4 as tiny-" in done.stdout
        assert f"ready: {server.url}/titles/tiny-" in done.stdout
        assert "100%" in done.stderr  # upload and packaging bars
        text = tmp_path / "notes.mp4"
        text.write_text("not a video\n")
        assert_one_line_error(
            surge("upload", str(text), "--server", server.url, "--token", TOKEN), "upload refused (415)"
        )
        assert_one_line_error(
            surge("upload", str(source), "--server", server.url, "--token", "wrong"), "(403)"
        )
        empty_env = subprocess.run(
            [*SURGE, "upload", str(source), "--server", server.url, "--data", str(tmp_path / "nowhere")],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "SURGE_ADMIN_TOKEN"},
            check=False,
        )
        assert_one_line_error(empty_env, "no admin token")
    finally:
        server.stop()
    # An unreachable server is a one-line error too.
    assert_one_line_error(
        surge("upload", str(source), "--server", "http://127.0.0.1:9", "--token", TOKEN), "cannot upload"
    )


@pytest.mark.parametrize("args", [[], ["nonsense"], ["transcode"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = surge(*args)
    assert done.returncode == 2
    assert "usage: surge" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_the_commands() -> None:
    done = surge("--help")
    assert done.returncode == 0
    assert "transcode" in done.stdout and "demo" in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["fleet", "--origin", "http://127.0.0.1:8080", "--host", "0.0.0.0", "--port", "0"],
        ["fleet", "--origin", "http://localhost:8080", "--port", "0", "--backend", "ray"],
    ],
)
def test_a_loopback_origin_is_refused_where_other_machines_would_get_it(argv: list[str]) -> None:
    assert_one_line_error(surge(*argv, timeout=60), "is a loopback address, which edges and players")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Workers on other machines would be sent to a loopback URL.
        (["origin", "--packagers", "ray", "--ray-address", "198.51.100.250:1"],
         "--packagers ray: workers on other machines would be sent to 127.0.0.1"),
        (["up", "--fleet-port", "0", "--packagers", "ray", "--host", "0.0.0.0", "--public-host", "localhost"],
         "would be sent to localhost, a loopback address"),
        (["origin", "--packagers", "processes", "--packager-lease", "0"],
         "--packager-lease must be 1-3600 s"),
        (["origin", "--packagers", "ray", "--host", "198.51.100.250", "--packager-lease", "60",
          "--packager-start-timeout", "30"], "--packager-start-timeout at least that"),
    ],
)  # fmt: skip
def test_packager_flags_are_checked_before_anything_starts(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    assert_one_line_error(surge(*argv, "--port", "0", "--data", str(tmp_path / "data"), timeout=60), message)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["origin", "up"])
def test_a_nonsense_chunk_length_stops_a_server_at_once(command: str, tmp_path: Path) -> None:
    done = surge(
        command, "--data", str(tmp_path / "data"), "--port", "0", "--chunk-seconds", "-5", timeout=60
    )
    assert_one_line_error(done, "the chunk length must be 0 (off) to 86400 s")
