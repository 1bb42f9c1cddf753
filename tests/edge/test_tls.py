"""HTTPS on real surge servers (mostly an edge, which has the most paths; then `surge up` whole): a real
TLS stack on both ends, clients verifying against a throwaway CA, the front's fast path over TLS, and
certificate reload."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import MakeSource, PrivateCA
from tests.edge.conftest import SEGMENT, EdgeProcess, Peer
from tests.edge.test_front import read_response, request
from tests.origin.conftest import SurgeProcess, upload, wait_for_status

PLAYLIST = SEGMENT.rsplit("/", 1)[0] + "/index.m3u8"


async def start_tls_edge(peer: Peer, test_ca: PrivateCA) -> EdgeProcess:
    cert, key = test_ca.issue()
    edge = EdgeProcess("--upstream", peer.url, "--tls-cert", str(cert), "--tls-key", str(key))
    return await asyncio.to_thread(edge.start)


async def open_tls(url: str, context: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("https://").split(":")
    return await asyncio.open_connection(host, int(port), ssl=context, limit=4 * 1024 * 1024)


def peer_serial(writer: asyncio.StreamWriter) -> str:
    certificate = writer.get_extra_info("peercert")
    assert certificate is not None
    return str(certificate["serialNumber"])


async def test_an_edge_over_https_misses_hits_up_front_and_advertises_https(
    peer: Peer, test_ca: PrivateCA
) -> None:
    edge = await start_tls_edge(peer, test_ca)
    try:
        assert edge.url.startswith("https://127.0.0.1:")
        async with test_ca.session() as session:
            async with session.get(edge.url + SEGMENT) as response:
                miss, miss_headers = await response.read(), response.headers.copy()
            async with session.get(edge.url + SEGMENT) as response:
                hit, hit_headers = await response.read(), response.headers.copy()
        assert miss == hit == peer.objects[SEGMENT]
        assert (miss_headers["X-Cache"], hit_headers["X-Cache"]) == ("MISS", "HIT")
        # The miss went through aiohttp (its Server header); the hit was answered by the front, over TLS.
        assert "Server" in miss_headers and "Server" not in hit_headers
        assert "Date" in miss_headers and "Date" in hit_headers
        assert peer.counts[SEGMENT] == 1
        # Pipelined hits on one TLS connection come back whole and in order.
        reader, writer = await open_tls(edge.url, test_ca.client_context())
        writer.write(request("GET", SEGMENT) + request("HEAD", SEGMENT) + request("GET", SEGMENT))
        first = await read_response(reader)
        second = await read_response(reader, head_only=True)
        third = await read_response(reader)
        assert [r[0] for r in (first, second, third)] == [200, 200, 200]
        assert first[2] == third[2] == peer.objects[SEGMENT]
        assert second[1]["content-length"] == str(len(peer.objects[SEGMENT]))
        writer.close()
    finally:
        await asyncio.to_thread(edge.stop)


async def test_sighup_reloads_the_certificate_for_new_connections_only(
    peer: Peer, test_ca: PrivateCA
) -> None:
    edge = await start_tls_edge(peer, test_ca)
    try:
        context = test_ca.client_context()
        reader, writer = await open_tls(edge.url, context)
        writer.write(request("GET", PLAYLIST))
        assert (await read_response(reader))[0] == 200
        old_serial = peer_serial(writer)
        test_ca.issue()  # new files in place of the old ones
        assert edge.process is not None
        edge.process.send_signal(signal.SIGHUP)
        await wait_for_event(edge, "certificate reloaded")
        # The open connection keeps its session and goes on being served...
        writer.write(request("GET", PLAYLIST))
        assert (await read_response(reader))[0] == 200
        assert peer_serial(writer) == old_serial
        # ...while a new one is handed the new certificate.
        new_reader, new_writer = await open_tls(edge.url, context)
        new_writer.write(request("GET", PLAYLIST))
        assert (await read_response(new_reader))[0] == 200
        assert peer_serial(new_writer) != old_serial
        # Bad files are refused on reload: the certificate in use stays.
        (test_ca.directory / "server.key").write_text("not a key\n")
        edge.process.send_signal(signal.SIGHUP)
        failed = await wait_for_event(edge, "certificate reload failed; the old one stays")
        assert "not a PEM certificate and its private key" in failed["error"]
        last_reader, last_writer = await open_tls(edge.url, context)
        last_writer.write(request("GET", PLAYLIST))
        assert (await read_response(last_reader))[0] == 200
        assert peer_serial(last_writer) == peer_serial(new_writer)
        for open_writer in (writer, new_writer, last_writer):
            open_writer.close()
    finally:
        assert await asyncio.to_thread(edge.stop) == 0


async def wait_for_event(edge: EdgeProcess, event: str) -> dict[str, object]:
    for _ in range(100):
        found = [e for e in list(edge.log) if e.get("event") == event]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event!r} in {edge.log}")


def surge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surge.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_bad_tls_flags_are_one_line_errors(tmp_path: Path, test_ca: PrivateCA) -> None:
    cert, key = test_ca.issue()
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    cases = {
        ("--tls-cert", str(cert)): "--tls-cert and --tls-key go together",
        ("--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing.key")): "no such file",
        ("--tls-cert", str(not_pem), "--tls-key", str(key)): "not a PEM certificate and its private key",
        ("--tls-cert", str(cert), "--tls-key", str(not_pem)): "not a PEM certificate and its private key",
    }
    for flags, message in cases.items():
        done = surge("edge", "--upstream", "http://127.0.0.1:9", "--port", "0", *flags)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("surge: error: ") and message in last, done.stderr
        assert "Traceback" not in done.stderr


async def test_surge_up_over_https_hands_players_https_edges(
    tmp_path: Path, test_ca: PrivateCA, make_source: MakeSource
) -> None:
    cert, key = test_ca.issue()
    up = SurgeProcess("up", "--data", str(tmp_path / "data"), "--fleet-port", "0", "--preset", "ultrafast",
                      "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    await asyncio.to_thread(up.start)
    try:
        urls = {e["name"]: e["url"] for e in await wait_for_listening(up, 2)}
        origin, fleet = urls["origin"], urls["fleet"]
        assert origin.startswith("https://") and fleet.startswith("https://")
        async with test_ca.session() as session:
            _, created, _ = await upload(
                session, origin, make_source("tiny.mp4", width=160, height=120, duration=2)
            )
            await wait_for_status(session, origin, created["id"], {"ready"})
            for _ in range(100):  # the fleet verified its first edge over HTTPS and made it active
                async with session.get(fleet + "/healthz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            async with session.get(f"{fleet}/titles/{created['id']}/master.m3u8") as response:
                assert response.status == 200
                master = await response.text()
            variants = [line for line in master.splitlines() if line and not line.startswith("#")]
            assert variants and all(v.startswith("https://127.0.0.1:") for v in variants)
            # The edge fills from the HTTPS origin, verifying it, and serves over HTTPS.
            async with session.get(variants[0]) as response:
                assert response.status == 200 and "#EXTINF" in await response.text()
    finally:
        assert await asyncio.to_thread(up.stop) == 0


async def wait_for_listening(process: SurgeProcess, count: int) -> list[dict[str, Any]]:
    for _ in range(300):
        found = [e for e in list(process.log) if e.get("event") == "listening"]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} listening events: {process.log}")
