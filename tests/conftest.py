"""Shared fixtures: tiny synthetic sources made with ffmpeg's lavfi generators, once per session."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from transcoder.sample import make_sample

MakeSource = Callable[..., Path]


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"the tests need {' and '.join(missing)}: run `make test`, which installs them"
        )


@pytest.fixture(scope="session")
def make_source(tmp_path_factory: pytest.TempPathFactory) -> MakeSource:
    """``make_source(name, **shape)`` → a generated file, made once per session per name."""
    directory = tmp_path_factory.mktemp("sources")
    made: dict[str, Path] = {}

    def make(name: str, **shape: object) -> Path:
        if name not in made:
            made[name] = make_sample(directory / name, **shape)
        return made[name]

    return make


async def serve_locally(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """A test peer: ``app`` on an ephemeral port of 127.0.0.1, without access log; returns its URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def ffmpeg_pids_under(directory: Path) -> list[int]:
    """PIDs of running ffmpeg processes whose command line mentions ``directory``, read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ffmpeg") and str(directory) in cmdline:
                pids.append(int(entry.name))
    return pids


async def json_of(url: str) -> tuple[int, Any]:
    """``GET url``: its status and JSON body."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()
