"""Several machines on one: hosts as network namespaces on a bridge, for tests and benchmarks.

A ``Lab`` owns one bridge in the root namespace and a /27 of the documentation range 198.51.100.0/24
(RFC 5737): the bridge takes the first address (processes of the root namespace, such as the origin and
the fleet, bind it), and every ``Host`` is a namespace joined to the bridge by a veth pair, with the next
free address. A host's card can be limited with ``tc ... tbf`` in each direction, and given a round trip
(``tests/wire.py``). Processes started on a host run inside its namespace; ``Host.kill()`` ends all of them,
as pulling a machine's plug would.

Names are unique per lab, and a lab records its owner's PID under ``/run/surge-labs``: ``Lab.close()``
tears everything down by name, and a new lab first sweeps what a killed owner left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETWORK = ipaddress.ip_network("198.51.100.0/24")
SLICE_PREFIX = 27  # 8 labs at once, 29 hosts each
RECORDS = Path("/run/surge-labs")
CARD_QUEUE = "50ms"  # how long a shaped link holds a packet before it drops it (tbf latency)


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=10)


def _tc(*args: str, namespace: str | None = None) -> None:
    command = [*(["ip", "netns", "exec", namespace] if namespace else []), "tc", *args]
    subprocess.run(command, capture_output=True, text=True, check=True, timeout=10)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (tried for real, then removed)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"surge-probe-{secrets.token_hex(3)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=True, timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", "") or str(err)
        return f"the kernel refused a network namespace: {detail.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False, timeout=10)
    return None


@dataclass
class Host:
    """One emulated machine: a namespace with one card on the lab's bridge."""

    name: str
    namespace: str
    address: str
    outer: str  # the veth end in the root namespace: shaping it limits what the host receives
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, args: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
        """Start ``args`` inside this host."""
        process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *args], **options)
        self.processes.append(process)
        return process

    def run(self, args: Sequence[str], **options: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *args], **options)

    def shape(
        self,
        egress: str | None = None,
        ingress: str | None = None,
        burst: str = "256kb",
        queue: str = CARD_QUEUE,
    ) -> None:
        """Limit the card (``tbf``, e.g. ``"200mbit"``): ``egress`` what it sends, ``ingress`` what it
        receives. Called again, it changes the rate of a running link. ``burst`` is what passes at once
        after a pause (and after every change): a few KB make a slow link slow from its first byte.
        ``queue`` is how long a packet may wait before the link drops it instead."""
        if egress:
            _tbf("eth0", egress, self.namespace, burst, queue)
        if ingress:
            _tbf(self.outer, ingress, None, burst, queue)

    def cut(self) -> None:
        """An outage: every packet for the host is dropped (the ``blackhole`` qdisc), yet the link stays
        up, so connections wait and retransmit rather than fail. ``shape(ingress=...)`` brings it back.
        Not a trickle such as tbf at 1 kbit/s: there a packet that gets through waits seconds in the
        queue, the sender's RTT estimate takes that in, and its retransmission timer then backs off for
        tens of seconds after the link is back, which no real outage does. (netem's 100 % loss would do
        too, but not every kernel has sch_netem.)"""
        _tc("qdisc", "replace", "dev", self.outer, "root", "blackhole")

    def forget_connections(self) -> None:
        """Drop what the kernels remember of this host's earlier TCP connections (``tcp_metrics``: RTT,
        cwnd, ssthresh), on both ends: the host's, and the root namespace's, where the lab's servers run.
        A new connection would otherwise start from the last one's, and the address may have been
        another lab's host an hour ago."""
        _ip("tcp_metrics", "delete", self.address, check=False)  # fails when nothing is remembered
        _ip("tcp_metrics", "flush", "all", namespace=self.namespace)

    def pids(self) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True,
                                check=False, timeout=10)  # fmt: skip
        return [int(pid) for pid in listed.stdout.split()]

    def kill(self) -> None:
        """Every process in the namespace, at once (SIGKILL): the machine is gone."""
        for _ in range(5):  # a process may fork while we kill
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)


def _lay_wire(outer: str, inner: str, delay: float) -> subprocess.Popen[str]:
    """Two TAP devices joined by a process that delays every frame; it ends, and they vanish, when it is
    killed or when this process dies (the pipe to it closes)."""
    wire = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("wire.py")), outer, inner, str(delay)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wire.stdout is not None
    if wire.stdout.readline().strip() != "ready":
        wire.kill()
        wire.communicate(timeout=10)
        raise RuntimeError(f"the wire to {inner} did not come up (exit status {wire.poll()})")
    return wire


def _tbf(device: str, rate: str, namespace: str | None, burst: str, queue: str) -> None:
    # burst: at least rate/HZ; 256 KiB keeps 200 Mbit/s+ exact; latency bounds the queue as a card's would.
    _tc("qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", burst, "latency", queue,
        namespace=namespace)  # fmt: skip


class Lab:
    """A bridge and its hosts. Use as a context manager; ``close()`` is safe to call more than once."""

    def __init__(self, prefix: str = "sl") -> None:
        if not (prefix.isalnum() and len(prefix) <= 3):
            raise ValueError("a lab prefix is 1-3 letters or digits")
        self.id = prefix + secrets.token_hex(3)  # interface names stay within 15 characters
        self.bridge = f"{self.id}br"
        self.hosts: list[Host] = []
        self._wires: list[subprocess.Popen[str]] = []
        self._closed = False
        RECORDS.mkdir(parents=True, exist_ok=True)
        with _records_lock():
            _sweep_orphans()
            self.network = _free_slice()
            (RECORDS / self.id).write_text(f"{os.getpid()} {self.network}\n")
        addresses = list(self.network.hosts())
        self._free = addresses[1:]
        self.address = str(addresses[0])
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.address}/{SLICE_PREFIX}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add_host(
        self, name: str, egress: str | None = None, ingress: str | None = None, *, rtt: float = 0.0
    ) -> Host:
        """A new machine on the bridge. ``rtt`` (seconds) puts that round trip on its card: the card is then
        a pair of TAP devices with ``tests/wire.py`` holding each frame rtt/2 each way, rather than a veth
        pair, whose round trip is a few microseconds and no network's."""
        if not self._free:
            raise RuntimeError("this lab has no free address left")
        if rtt < 0:
            raise ValueError("a round trip cannot be negative")
        index = len(self.hosts)
        namespace = f"{self.id}-{name}"
        outer, inner = f"{self.id}v{index}", f"{self.id}p{index}"
        host = Host(name, namespace, str(self._free.pop(0)), outer)
        self.hosts.append(host)
        _ip("netns", "add", namespace)
        if rtt:
            self._wires.append(_lay_wire(outer, inner, rtt / 2))
        else:
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", "lo", "up", namespace=namespace)
        _ip("link", "set", inner, "name", "eth0", namespace=namespace)
        _ip("addr", "add", f"{host.address}/{SLICE_PREFIX}", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)
        host.shape(egress, ingress)
        return host

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            host.kill()
        for wire in self._wires:  # its devices go with it
            wire.kill()
            wire.communicate(timeout=10)  # and its pipes are closed
        _remove(self.id)


def _remove(lab_id: str) -> None:
    """Everything a lab made, by name: namespaces (and the processes in them), veths, the bridge."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=10)
    for line in listed.stdout.splitlines():
        namespace = line.split()[0] if line.split() else ""
        if namespace.startswith(f"{lab_id}-"):
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                                  check=False, timeout=10).stdout.split()  # fmt: skip
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", namespace, check=False)
    links = _ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        device = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if device.startswith(lab_id) and not device.endswith("br"):
            _ip("link", "del", device, check=False)
    _ip("link", "del", f"{lab_id}br", check=False)
    with contextlib.suppress(FileNotFoundError):
        (RECORDS / lab_id).unlink()


@contextlib.contextmanager
def _records_lock() -> Iterator[None]:
    with (RECORDS / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_orphans() -> None:
    for record in RECORDS.iterdir():
        if record.name.startswith("."):
            continue
        try:
            pid = int(record.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if not _alive(pid):
            _remove(record.name)


def _free_slice() -> ipaddress.IPv4Network:
    used = set()
    for record in RECORDS.iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            used.add(ipaddress.ip_network(record.read_text().split()[1]))
    for candidate in NETWORK.subnets(new_prefix=SLICE_PREFIX):  # type: ignore[union-attr]
        if candidate not in used:
            return candidate  # type: ignore[return-value]
    raise RuntimeError("every slice of 198.51.100.0/24 is taken by a running lab")


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class RayCluster:
    """A Ray head on the lab's bridge address (root namespace) and worker nodes on hosts.

    Every process is started with ``--block`` and known by PID; ``close()`` stops them and then kills
    whatever still names this cluster's temporary directory (the workers Ray forked)."""

    def __init__(
        self, lab: Lab, ray: str, *, head_resources: dict[str, float] | None = None, cpus: str | None = None
    ):
        self.lab = lab
        self.ray = ray
        self.temp_dir = Path(f"/tmp/{lab.id}-ray")  # short: unix socket paths have at most 107 bytes
        # A lab cluster is reachable from its own namespaces only; token auth would also need the token
        # in every test process (Ray turns it on by itself once ~/.ray/auth_token exists).
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.port = free_port(lab.address)
        self.address = f"{lab.address}:{self.port}"
        self.nodes: dict[str, subprocess.Popen[Any]] = {}
        # Every Ray process, and what its workers start, on these CPUs (a taskset list such as "0").
        self.pin = ["taskset", "-c", cpus] if cpus else []
        common = ["--block", "--disable-usage-stats", "--num-cpus", "1", "--object-store-memory", "80000000"]
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.head_log = self.temp_dir / "head.log"
        with self.head_log.open("w") as head_log:
            self.head = subprocess.Popen(
                [*self.pin, ray, "start", "--head", "--node-ip-address", lab.address,
                 "--port", str(self.port), "--include-dashboard=false",
                 "--ray-client-server-port", str(free_port(lab.address)),
                 "--temp-dir", str(self.temp_dir / "head"), "--resources", json.dumps(head_resources or {}),
                 *common],
                stdout=head_log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )  # fmt: skip
        self._common = common
        try:
            self.wait_for_nodes(1)
        except BaseException:
            self.close()
            raise

    def add_node(self, host: Host, resources: dict[str, float], cpus: str | None = None) -> None:
        """A worker node on ``host``; ``cpus`` (a taskset list) pins it instead of the cluster's CPUs."""
        pin = ["taskset", "-c", cpus] if cpus else self.pin
        # The node's own /tmp (its workers' temporary files), removed with the cluster as a lost machine's
        # disk would be: a killed worker cannot clean up after itself.
        scratch = self.temp_dir / f"{host.name}-tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        # Unix sockets live in the one file system that every namespace shares: a directory per node.
        self.nodes[host.name] = host.popen(
            [*pin, self.ray, "start", "--address", self.address, "--node-ip-address", host.address,
             "--resources", json.dumps(resources), "--temp-dir", str(self.temp_dir / host.name),
             *self._common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**self.env, "TMPDIR": str(scratch)},
        )  # fmt: skip

    def status(self) -> str:
        done = subprocess.run([self.ray, "status", "--address", self.address], capture_output=True, text=True,
                              env=self.env, timeout=30, check=False)  # fmt: skip
        return done.stdout

    def alive_nodes(self) -> int:
        text = self.status()
        if "Active:" not in text:
            return 0
        active = text.split("Active:", 1)[1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))

    def wait_for_nodes(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray cluster has fewer than {count} nodes: {self.status()}\n"
                                   f"head: {self.head_log.read_text()[-3000:]}")  # fmt: skip
            if self.head.poll() is not None:
                raise RuntimeError(f"the Ray head exited with {self.head.returncode}")
            time.sleep(0.5)

    def close(self) -> None:
        for process in [*self.nodes.values(), self.head]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.nodes.values(), self.head]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in _pids_mentioning(str(self.temp_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids
