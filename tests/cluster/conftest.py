"""Several machines on one: a lab of network namespaces, a Ray cluster on it, and an origin on the bridge.

Edge hosts are Ray worker nodes offering one ``surge_edge`` unit each, their cards limited to 200 Mbit/s;
packaging hosts offer one ``surge_packager`` unit each; players run on a host of their own, so nothing
they are handed can point at loopback. Where the kernel
refuses namespaces, every test here is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver

from tests.chromium import CHROMEDRIVER, chromium_options
from tests.conftest import MakeSource
from tests.hosts import Host, Lab, RayCluster, unavailable_reason
from tests.origin.conftest import OriginProcess, SurgeProcess, upload, wait_for_status

RAY = str(Path(sys.executable).with_name("ray"))
EDGE_HOSTS = 3
PACKAGER_HOSTS = 2
CARD = "200mbit"
EDGE_UNITS = {"surge_edge": 1}
PACKAGER_UNITS = {"surge_packager": 1}
CHROMEDRIVER_PORT = 9515  # in the host's own namespace: no clash with anything of this machine


@dataclass
class Cluster:
    lab: Lab
    ray: RayCluster
    edge_hosts: list[Host]
    player: Host
    packager_hosts: list[Host]
    reviving: bool = False

    def host_at(self, address: str) -> Host:
        return next(h for h in self.edge_hosts + self.packager_hosts if h.address == address)

    def revive(self, host: Host) -> None:
        """A killed machine back in the cluster (a fresh Ray node in its namespace); the next test waits
        for it (``ready``), the last one does not."""
        self.ray.add_node(host, PACKAGER_UNITS if host in self.packager_hosts else EDGE_UNITS)
        self.reviving = True

    def ready(self) -> None:
        if self.reviving:
            self.ray.wait_for_nodes(1 + len(self.edge_hosts) + len(self.packager_hosts), timeout=120)
            self.reviving = False


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("the ray package is not installed (pip install 'surge[ray]')")
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no test hosts: {reason}")
    with Lab("sc") as lab:
        ray_cluster = RayCluster(lab, RAY)
        os.environ["RAY_AUTH_MODE"] = ray_cluster.env["RAY_AUTH_MODE"]  # the fleets we start join it
        try:
            hosts = [lab.add_host(f"edge{i}", egress=CARD) for i in range(EDGE_HOSTS)]
            player = lab.add_host("player")
            packagers = [lab.add_host(f"pack{i}", egress=CARD) for i in range(PACKAGER_HOSTS)]
            for host in hosts:
                ray_cluster.add_node(host, EDGE_UNITS)
            for host in packagers:
                ray_cluster.add_node(host, PACKAGER_UNITS)
            # Six Ray nodes start at once: on a busy two-core machine that can take over a minute.
            ray_cluster.wait_for_nodes(1 + EDGE_HOSTS + PACKAGER_HOSTS, timeout=120)
            yield Cluster(lab, ray_cluster, hosts, player, packagers)
        finally:
            os.environ.pop("RAY_AUTH_MODE", None)
            ray_cluster.close()


@pytest.fixture(autouse=True)
def every_host_up(cluster: Cluster) -> None:
    """Each test starts with every machine of the cluster, a host revived by the test before included."""
    cluster.ready()


@pytest.fixture(scope="package")
def lab_origin(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, make_source: MakeSource
) -> Iterator[tuple[OriginProcess, str]]:
    """An origin on the bridge address with one published title: (origin, title id)."""
    origin = OriginProcess(tmp_path_factory.mktemp("origin") / "data", "--host", cluster.lab.address,
                           "--preset", "ultrafast").start()  # fmt: skip
    try:
        title = asyncio.run(_publish(origin, make_source))
        yield origin, title
    finally:
        origin.stop()


async def _publish(origin: OriginProcess, make_source: MakeSource) -> str:
    async with aiohttp.ClientSession() as session:
        source = make_source("cluster.mp4", width=640, height=360, duration=12)
        _, body, _ = await upload(session, origin.url, source, name="Crowd")
        await wait_for_status(session, origin.url, body["id"], {"ready"})
        return str(body["id"])


def kill_edges(cluster: Cluster, namespace: str) -> None:
    """The detached edge actors a test's fleets left in ``namespace`` (they outlive every fleet)."""
    script = (
        "import ray, sys\n"
        f"ray.init(address={cluster.ray.address!r}, namespace={namespace!r}, logging_level='ERROR',"
        f" _node_ip_address={cluster.lab.address!r})\n"
        "for a in ray.util.list_named_actors(all_namespaces=True):\n"
        f"    if a['namespace'] == {namespace!r}:\n"
        "        ray.kill(ray.get_actor(a['name'], a['namespace']), no_restart=True)\n"
    )
    subprocess.run([sys.executable, "-c", script], env=cluster.ray.env, capture_output=True, timeout=60,
                   check=False)  # fmt: skip


class FleetOnLab(SurgeProcess):
    """``surge fleet --backend ray`` on the bridge address."""

    def __init__(self, cluster: Cluster, origin: str, namespace: str, *args: str) -> None:
        ray = ("--backend", "ray", "--ray-address", cluster.ray.address, "--ray-namespace", namespace)
        super().__init__("fleet", "--origin", origin, "--host", cluster.lab.address, *ray, *args)


async def fleet_state(fleet: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{fleet}/fleet") as response:
        return await response.json()  # type: ignore[no-any-return]


async def wait_for_fleet(fleet: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await fleet_state(fleet)
        except (aiohttp.ClientError, TimeoutError):
            state = {}
        if state and check(state):
            return state
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {state.get('edges')}"
        await asyncio.sleep(0.25)


def active_edges(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in state["edges"] if e["state"] == "active"]


class Players:
    """``surge loadtest`` on the player host: viewers that follow the fleet's master and steering."""

    def __init__(self, host: Host, report: Path, master: str, *args: str) -> None:
        self.report = report
        self.process = host.popen(
            [sys.executable, "-m", "surge.cli", "loadtest", master, "--allow-remote", "--quiet",
             "--report", str(report), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        )  # fmt: skip

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            _, stderr = self.process.communicate(timeout=20)
        assert self.report.is_file(), f"the load test wrote no report: {stderr[-2000:]}"
        return json.loads(self.report.read_text())  # type: ignore[no-any-return]


@contextlib.contextmanager
def chromium_on(host: Host, lab: Lab) -> Iterator[WebDriver]:
    """Headless Chromium running on ``host`` (its chromedriver too, in the host's namespace), driven from
    this machine over the bridge: the browser reaches servers only as a player on that host would."""
    if not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMEDRIVER} is missing: `make test` installs chromium-driver with apt-get")
    driver_url = f"http://{host.address}:{CHROMEDRIVER_PORT}"
    process = host.popen([str(CHROMEDRIVER), f"--port={CHROMEDRIVER_PORT}", f"--allowed-ips={lab.address}",
                          "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{driver_url}/status", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, f"chromedriver on {host.name} exited: {process.returncode}"
                assert time.monotonic() < deadline, f"chromedriver on {host.name} does not answer"
                time.sleep(0.1)
        with chromium_options() as options:
            browser = webdriver.Remote(command_executor=driver_url, options=options)
            try:
                browser.set_page_load_timeout(30)
                browser.set_script_timeout(30)
                yield browser
            finally:
                browser.quit()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
