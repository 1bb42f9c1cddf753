"""Signed playback URLs end to end: a real origin that needs them, its admin call that makes them, and a
real edge in front of it that checks them before its cache (no upstream traffic for a bad token) and
caches each object once whatever the token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest

from media.signing import Grant, SigningKeys, make_token, signed_path
from tests.conftest import MakeSource
from tests.edge.conftest import EdgeProcess
from tests.origin.conftest import AUTH, OriginProcess, publish_small_title

KEY = "signing-key-0123456789abcdef"
OLD_KEY = "retired-key-0123456789abcdef"
FAR = 4_000_000_000  # an expiry in 2096


@dataclass
class Signed:
    origin: OriginProcess
    title_id: str


async def upstream_fetches(edge: EdgeProcess) -> int:
    _, _, body = await fetch(edge.url + "/stats")
    return int(json.loads(body)["upstream_fetches"])


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource) -> Iterator[Signed]:
    data = tmp_path_factory.mktemp("signed") / "data"
    origin = OriginProcess(data, "--preset", "ultrafast", "--signing-key", KEY, "--signing-key", OLD_KEY)
    origin.start()
    try:
        yield Signed(origin, publish_small_title(origin, make_source))
    finally:
        origin.stop()


async def fetch(url: str, **headers: str) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers.copy(), await response.read()


async def make_url(server: str, title_id: str, **body: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server}/admin/titles/{title_id}/tokens", json=body, headers=AUTH) as response,
    ):
        return response.status, await response.json()


async def play(master_url: str) -> list[str]:
    """Every URL a player would fetch from the master down (one variant, one audio, init, 2 segments),
    each required to answer 200: the token travels in the path of every relative URI."""
    fetched = [master_url]
    _, _, master = await fetch(master_url)
    lines = master.decode().splitlines()
    variant = urljoin(master_url, next(line for line in lines if line and not line.startswith("#")))
    audio = urljoin(master_url, next(line for line in lines if "TYPE=AUDIO" in line).split('URI="')[1][:-1])
    for playlist in (variant, audio):
        status, _, body = await fetch(playlist)
        assert status == 200, playlist
        fetched.append(playlist)
        media = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
        init = urljoin(playlist, body.decode().split('URI="')[1].split('"')[0])
        for url in (init, *(urljoin(playlist, m) for m in media[:2])):
            status, _, _ = await fetch(url)
            assert status == 200, url
            fetched.append(url)
    return fetched


async def test_the_admin_call_makes_a_url_that_plays_and_nothing_else_does(signed: Signed) -> None:
    origin, title_id = signed.origin, signed.title_id
    status, made = await make_url(origin.url, title_id, ttl=600)
    assert status == 201
    assert made["url"] == f"{origin.url}/t/{made['token']}/titles/{title_id}/master.m3u8"
    assert made["prefix"] == f"/titles/{title_id}/" and made["client"] is None
    assert 590 <= made["expires"] - time.time() <= 600
    fetched = await play(made["url"])
    assert all(f"/t/{made['token']}/titles/{title_id}/" in url for url in fetched)
    # A second time, the files in memory are answered by the front (no aiohttp Server header).
    _, fast, _ = await fetch(made["url"])
    assert "Server" not in fast and fast["Content-Type"] == "application/vnd.apple.mpegurl"

    master = f"/titles/{title_id}/master.m3u8"
    keys = SigningKeys((KEY.encode(),))
    refused = {
        "unsigned": origin.url + master,
        "expired": origin.url + signed_path(make_token(keys, Grant(f"/titles/{title_id}/", 1)), master),
        "another title": origin.url
        + signed_path(make_token(keys, Grant("/titles/other-title/", FAR)), master),
        "another client": origin.url
        + signed_path(make_token(keys, Grant(f"/titles/{title_id}/", FAR, "198.51.100.7")), master),
        "unknown key": origin.url
        + signed_path(make_token(SigningKeys((b"x" * 16,)), Grant(f"/titles/{title_id}/", FAR)), master),
        "tampered": made["url"].replace(f".{made['expires']}.", f".{made['expires'] + 1}."),
    }
    reasons = {"unsigned": "needs a signed URL",
               "expired": "expired", "another title": "another title", "another client": "another client",
               "unknown key": "wrong signature", "tampered": "wrong signature"}  # fmt: skip
    for case, url in refused.items():
        for _ in range(2):  # the slow path once, then whatever a repeat takes
            status, headers, body = await fetch(url)
            assert status == 403 and headers["Content-Type"].startswith("application/json"), case
            assert reasons[case] in json.loads(body)["error"], case
    # The fleet's short alias of a master is not a token: the origin does not serve it, signed or not.
    assert (await fetch(f"{origin.url}/t/{title_id}/master.m3u8"))[0] == 404
    # A URL made with the key being retired still plays during the rotation.
    old = signed_path(
        make_token(SigningKeys((OLD_KEY.encode(),)), Grant(f"/titles/{title_id}/", FAR)), master
    )
    assert (await fetch(origin.url + old))[0] == 200
    # The catalog stays public.
    assert (await fetch(origin.url + "/titles"))[0] == 200


async def test_a_url_bound_to_the_client_and_to_one_rendition(signed: Signed) -> None:
    status, made = await make_url(signed.origin.url, signed.title_id, client="127.0.0.1", rendition="360p")
    assert status == 201 and made["url"].endswith("/360p/index.m3u8") and made["client"] == "127.0.0.1"
    assert (await fetch(made["url"]))[0] == 200
    assert (await fetch(made["url"].replace("/360p/index.m3u8", "/master.m3u8")))[0] == 403
    status, made = await make_url(signed.origin.url, signed.title_id, client="198.51.100.7")
    status, _, body = await fetch(made["url"])
    assert status == 403 and b"another client address" in body
    status, made = await make_url(signed.origin.url, signed.title_id, base="https://cdn.example:8443")
    assert made["url"].startswith("https://cdn.example:8443/t/")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"ttl": 0}, 400, "ttl must be"),
        ({"ttl": "60"}, 400, "ttl must be"),
        ({"client": "not-an-address"}, 400, "client must be"),
        ({"rendition": "../x"}, 400, "rendition must be"),
        ({"base": "ftp://x"}, 400, "base must be"),
        ({"base": "https://x/path"}, 400, "base must be"),
        ({"other": 1}, 400, "unknown fields: other"),
    ],
)
async def test_bad_token_requests(signed: Signed, body: dict[str, Any], status: int, message: str) -> None:
    got, answer = await make_url(signed.origin.url, signed.title_id, **body)
    assert got == status and message in answer["error"]


async def test_token_requests_need_the_admin_token_and_a_title(signed: Signed) -> None:
    url = f"{signed.origin.url}/admin/titles/{signed.title_id}/tokens"
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        assert response.status == 401
    status, answer = await make_url(signed.origin.url, "no-such-title")
    assert status == 404 and "no-such-title" in answer["error"]


async def test_token_requests_when_signing_is_off(origin: OriginProcess) -> None:
    status, answer = await make_url(origin.url, "any-title")
    assert status == 409 and "--signing-key" in answer["error"]


async def test_an_edge_checks_tokens_before_its_cache_and_caches_once(signed: Signed, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# current key first\n{KEY}\n")
    edge = await asyncio.to_thread(
        EdgeProcess(
            "--upstream", signed.origin.url, "--signing-key-file", str(key_file), "--prefetch", "0"
        ).start
    )
    try:
        _, made = await make_url(signed.origin.url, signed.title_id, base=edge.url)
        assert made["url"].startswith(edge.url + "/t/")
        fetched = await play(made["url"])
        segment = fetched[-1]
        _, again = await make_url(signed.origin.url, signed.title_id, base=edge.url, client="127.0.0.1")
        other_token = segment.replace(made["token"], again["token"])
        before = await upstream_fetches(edge)
        status, headers, _ = await fetch(other_token)
        # One object, cached once, whatever the token (the edge signs its own upstream requests).
        assert status == 200 and headers["X-Cache"] == "HIT"
        assert "Server" not in headers  # checked and answered by the front, without aiohttp
        refused = [
            segment.replace(f"/t/{made['token']}", ""),
            segment.replace(f".{made['expires']}.", f".{made['expires'] + 1}."),
            edge.url
            + signed_path(
                make_token(SigningKeys((KEY.encode(),)), Grant("/titles/other-title/", FAR)),
                f"/titles/{signed.title_id}/360p/seg_00000.m4s",
            ),
            edge.url
            + signed_path(
                make_token(SigningKeys((KEY.encode(),)), Grant(f"/titles/{signed.title_id}/", 1)),
                f"/titles/{signed.title_id}/360p/seg_00009.m4s",
            ),
        ]
        for url in refused:
            status, headers, body = await fetch(url)
            assert status == 403 and b'"error"' in body, url
        assert await upstream_fetches(edge) == before  # no upstream traffic for hits nor for refusals
    finally:
        await asyncio.to_thread(edge.stop)


async def test_an_edge_without_the_keys_gets_the_origins_refusal(signed: Signed) -> None:
    edge = await asyncio.to_thread(EdgeProcess("--upstream", signed.origin.url).start)
    try:
        status, _, body = await fetch(f"{edge.url}/titles/{signed.title_id}/master.m3u8")
        assert status == 403 and b"signed URL" in body
    finally:
        await asyncio.to_thread(edge.stop)


def test_bad_signing_keys_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty-keys"
    empty.write_text("# no key yet\n\n")
    cases = {
        ("--signing-key", "short"): "at least 16 bytes",
        (
            "--signing-key",
            KEY,
            "--signing-key",
            OLD_KEY,
            "--signing-key",
            KEY + "x",
        ): "one or two signing keys",
        ("--signing-key-file", str(tmp_path / "missing")): "cannot read the signing key file",
        ("--signing-key-file", str(empty)): "holds no key",
    }
    for command in (
        ["origin", "--data", str(tmp_path / "data")],
        ["edge", "--upstream", "http://127.0.0.1:9"],
    ):
        for flags, message in cases.items():
            done = subprocess.run(
                [sys.executable, "-m", "surge.cli", *command, "--port", "0", *flags],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 1, done.stderr
            last = done.stderr.strip().splitlines()[-1]
            assert last.startswith("surge: error: ") and message in last, done.stderr
            assert "Traceback" not in done.stderr
