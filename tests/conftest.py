"""Shared fixtures: tiny synthetic sources made with ffmpeg's lavfi generators, once per session."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from transcoder.sample import make_sample

MakeSource = Callable[..., Path]
TESTS = Path(__file__).resolve().parent


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"the tests need {' and '.join(missing)}: run `make test`, which installs them"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``): a file's tests run in one
    worker, so that its module fixtures are made once, and the tests on emulated hosts (tests/cluster) all
    in one worker, so that one Ray cluster runs at a time."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        item.add_marker(pytest.mark.xdist_group("cluster" if parts[0] == "cluster" else "/".join(parts)))


@pytest.fixture(scope="session")
def make_source(tmp_path_factory: pytest.TempPathFactory) -> MakeSource:
    """``make_source(name, **shape)`` → a generated file named ``name``, made once per session per name and
    shape: two tests asking for one name in different shapes get a file each."""
    directory = tmp_path_factory.mktemp("sources")
    made: dict[tuple[str, str], Path] = {}

    def make(name: str, **shape: object) -> Path:
        key = (name, repr(sorted(shape.items())))
        if key not in made:
            shape_directory = directory / str(len(made))
            shape_directory.mkdir()
            made[key] = make_sample(shape_directory / name, **shape)
        return made[key]

    return make


async def serve_locally(
    app: web.Application, port: int = 0, **runner_options: Any
) -> tuple[web.AppRunner, str]:
    """A test peer: ``app`` on 127.0.0.1 (an ephemeral port unless ``port``), without access log; returns
    its URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
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


@dataclass
class PrivateCA:
    """A throwaway certificate authority (trustme) and the files of a server certificate it issued."""

    ca: trustme.CA
    directory: Path

    def issue(self, name: str = "server", common_name: str | None = None) -> tuple[Path, Path]:
        """A certificate for 127.0.0.1 and localhost: (cert.pem, key.pem) under the test's directory."""
        leaf = self.ca.issue_cert("127.0.0.1", "localhost", common_name=common_name)
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        return cert, key

    def client_context(self) -> ssl.SSLContext:
        """What every test client uses to talk to our HTTPS servers: verification on, the test CA trusted."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def session(self, **options: Any) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.client_context()), **options)


@pytest.fixture
def test_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PrivateCA:
    """Also points SSL_CERT_FILE at the CA, so that surge servers started by the test (an edge filling from
    an HTTPS origin, a fleet polling HTTPS edges) verify each other against it, as with a private CA."""
    directory = tmp_path / "tls"
    directory.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(directory / "ca.pem"))
    return PrivateCA(ca, directory)
