"""The lab of emulated machines itself (tests/hosts.py): what benches and cluster tests rely on."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.hosts import Host, Lab, unavailable_reason

# A server that prints its port, answers one connection with 200 KB, then exits: enough for both kernels
# to measure the connection (RTT, cwnd) and remember it when it closes.
SERVE_ONCE = """
import socket, sys
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
connection.recv(100)
connection.sendall(b"x" * 200_000)
connection.close()
"""
FETCH = """
import socket, sys
received = 0
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:
    s.sendall(b"go")
    while chunk := s.recv(65536):
        received += len(chunk)
print(received)
"""
# Exits 0 when a connection to (address, port) is set up within a second, 1 when it times out.
CONNECTS = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except TimeoutError:
    sys.exit(1)
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no test hosts: {reason}")
    with Lab("sh") as made:
        yield made


def remembered(host: Host) -> tuple[str, str]:
    """What the root namespace and the host remember of their TCP connections, by peer address."""
    root = subprocess.run(["ip", "tcp_metrics", "show", host.address], capture_output=True, text=True,
                          check=False, timeout=10).stdout  # fmt: skip
    inside = host.run(["ip", "tcp_metrics", "show"], capture_output=True, text=True, check=False, timeout=10)
    return root, inside.stdout


def test_forget_connections_clears_what_both_ends_remember(lab: Lab) -> None:
    host = lab.add_host("a")
    serve = [sys.executable, "-c", SERVE_ONCE, lab.address]
    with subprocess.Popen(serve, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            port = server.stdout.readline().strip()  # the port it listens on
            host.run([sys.executable, "-c", FETCH, lab.address, port], check=True, timeout=30)
            server.wait(10)
        finally:
            server.kill()
    root, inside = remembered(host)
    assert host.address in root and lab.address in inside  # what a new connection would start from

    host.forget_connections()

    assert remembered(host) == ("", "")


def test_cut_drops_everything_for_the_host_and_a_transfer_resumes_after(lab: Lab) -> None:
    host = lab.add_host("a")
    host.shape(ingress="400kbit", burst="16kb", queue="200ms")  # 200 KB take 4 s
    serve = [sys.executable, "-c", SERVE_ONCE, lab.address]
    with subprocess.Popen(serve, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            port = server.stdout.readline().strip()
            fetch = host.popen([sys.executable, "-c", FETCH, lab.address, port], stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
            time.sleep(1)
            host.cut()
            # Not even a SYN-ACK gets through: a new connection times out, and the link sent nothing.
            assert host.run([sys.executable, "-c", CONNECTS, lab.address, port], timeout=30).returncode == 1
            stats = subprocess.run(["tc", "-s", "qdisc", "show", "dev", host.outer], capture_output=True,
                                   text=True, check=True, timeout=10).stdout  # fmt: skip
            assert "blackhole" in stats and " Sent 0 bytes 0 pkt (dropped 0," not in stats
            assert " Sent 0 bytes 0 pkt (dropped " in stats
            host.shape(ingress="400kbit", burst="16kb", queue="200ms")
            received, _ = fetch.communicate(timeout=60)
            assert fetch.returncode == 0 and int(received) == 200_000  # it waited, and lost nothing
        finally:
            server.kill()
            host.kill()


# FETCH, also printing how long the connection took to set up: one round trip.
TIMED_FETCH = """
import socket, sys, time
started = time.perf_counter()
received = 0
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:
    print(time.perf_counter() - started)
    s.sendall(b"go")
    while chunk := s.recv(65536):
        received += len(chunk)
print(received)
"""


def wire_running(outer: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"wire.py {outer} "], capture_output=True, check=False, timeout=10)
    return found.returncode == 0


def test_a_host_with_a_round_trip_waits_it_on_every_exchange_and_loses_nothing() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no test hosts: {reason}")
    with Lab("sh") as lab:
        host = lab.add_host("far", rtt=0.06)
        host.shape(ingress="4mbit", burst="16kb", queue="200ms")  # tc still shapes the card
        serve = [sys.executable, "-c", SERVE_ONCE, lab.address]
        with subprocess.Popen(serve, stdout=subprocess.PIPE, text=True) as server:
            try:
                assert server.stdout is not None
                port = server.stdout.readline().strip()
                fetch = [sys.executable, "-c", TIMED_FETCH, lab.address, port]
                fetched = host.run(fetch, capture_output=True, text=True, check=True, timeout=30)
            finally:
                server.kill()
        connect_seconds, received = fetched.stdout.split()
        # SYN out, SYN-ACK back: a full round trip, never less (the first may also wait for ARP).
        assert float(connect_seconds) >= 0.06
        assert int(received) == 200_000  # every frame through, in order
        assert wire_running(host.outer)
    # The wire's process, and both its devices with it, are gone with the lab.
    assert not wire_running(host.outer)
    shown = subprocess.run(["ip", "link", "show", host.outer], capture_output=True, check=False, timeout=10)
    assert shown.returncode != 0
