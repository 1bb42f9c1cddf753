"""A real origin process on an ephemeral port, and helpers to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

from tests.conftest import MakeSource

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class SurgeProcess:
    """A ``surge`` server command as a user runs it, on port 0; its URL comes from the 'listening' log
    line, and every JSON log line is kept in ``log``."""

    def __init__(self, command: str, *args: str, token: str | None = TOKEN) -> None:
        self.command = command
        self.args = args
        self.token = token
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: list[dict[str, Any]] = []

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if k != "SURGE_ADMIN_TOKEN"}
        if self.token is not None:
            env["SURGE_ADMIN_TOKEN"] = self.token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "surge.cli", self.command, "--port", "0", *self.args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        listening = threading.Event()
        # Drain stderr all along: a full pipe would block the server.
        self._reader = threading.Thread(target=self._read_log, args=(listening,), daemon=True)
        self._reader.start()
        if not listening.wait(30):
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{self.command} did not start listening: {self.log}")
        return self

    def _read_log(self, listening: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unstructured", "text": line.rstrip()}
            self.log.append(event)
            if event.get("event") == "listening":
                self.url = event["url"]
                listening.set()
        self.process.stderr.close()

    def requests_for(self, path: str) -> int:
        """How many requests for ``path`` this server has logged."""
        return sum(1 for e in list(self.log) if e.get("event") == "request" and e.get("path") == path)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(10)
        return code


class OriginProcess(SurgeProcess):
    """``surge origin --data DATA``."""

    def __init__(self, data: Path, *args: str, token: str | None = TOKEN) -> None:
        super().__init__("origin", "--data", str(data), *args, token=token)
        self.data = data


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[OriginProcess]:
    server = OriginProcess(tmp_path / "data").start()
    yield server
    server.stop()


async def wait_for_status(
    session: aiohttp.ClientSession, url: str, title_id: str, wanted: set[str], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{url}/admin/titles/{title_id}", headers=AUTH) as response:
            body: dict[str, Any] = await response.json()
        if body.get("status") in wanted:
            return body
        assert time.monotonic() < deadline, f"{title_id} still {body} after {timeout} s"
        await asyncio.sleep(0.1)


async def upload(
    session: aiohttp.ClientSession, url: str, path: Path, name: str = "Test", content_type: str = "video/mp4"
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with session.post(
        f"{url}/admin/titles",
        params={"name": name},
        data=io.BytesIO(path.read_bytes()),
        headers=AUTH | {"Content-Type": content_type},
    ) as response:
        return response.status, await response.json(), response


def publish_small_title(origin: OriginProcess, make_source: MakeSource) -> str:
    """Upload 8 s of 640x360 with audio to a running origin and wait until it is ready: its title id."""

    async def publish() -> str:
        async with aiohttp.ClientSession() as session:
            source = make_source("with-audio.mp4", width=640, height=360, duration=8)
            _, body, _ = await upload(session, origin.url, source)
            await wait_for_status(session, origin.url, body["id"], {"ready"})
            return str(body["id"])

    return asyncio.run(publish())


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@contextlib.contextmanager
def small_filesystem(directory: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted on ``directory`` (a disk that fills up for real), unmounted
    afterwards, also on failure. Needs root, which ``make test`` runs as."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (root is needed): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)
