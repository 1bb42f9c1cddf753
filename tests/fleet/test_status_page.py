"""The fleet's live status page (``GET /``) in Debian's headless Chromium, against a real origin, a real
fleet and real edge processes: the page shows the edges, then follows a scale-out as it happens.

Selenium calls block, so they run in a thread (``asyncio.to_thread``) while the crowd's players keep the
event loop busy. The browser comes from the origin's browser tests (``tests/origin/test_browser.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import MakeSource
from tests.fleet.test_fleet import Crowd, edge_pids, fleet_state
from tests.origin.conftest import OriginProcess, SurgeProcess, upload, wait_for_status
from tests.origin.test_browser import browser as browser
from tests.origin.test_browser import console, needs_chromium

# What the page shows, read from its DOM: edge rows, scaling events, and the chart's lines with the legend.
PAGE_STATE = """
const rows = [...document.querySelectorAll("#edges tbody tr")].map((tr) => {
  const cells = [...tr.cells].map((td) => td.textContent);
  return {id: cells[0], state: cells[1], url: cells[2], stateClass: tr.cells[1].className,
          health: tr.cells[1].title, dataEdge: tr.dataset.edge};
});
const lines = [...document.querySelectorAll("#chart polyline")].map((p) => ({
  stroke: p.getAttribute("stroke"), dashed: p.hasAttribute("stroke-dasharray"),
  points: p.getAttribute("points").trim().split(/\\s+/).map((xy) => xy.split(",").map(Number)),
}));
const legend = [...document.querySelectorAll("#legend span")].map((s) => ({text: s.textContent,
  color: s.style.color}));
return {rows, lines, legend, count: document.getElementById("edge-count").textContent,
        decision: document.getElementById("decision").textContent,
        events: [...document.querySelectorAll("#events li")].map((li) => li.textContent)};
"""
# Resolves a CSS colour as the browser computes it, so "#1f77b4" and "rgb(31, 119, 180)" compare equal.
RGB = """const s = document.createElement("span"); s.style.color = arguments[0]; return s.style.color;"""


async def page_until(driver: WebDriver, check: Any, timeout: float, what: str) -> dict[str, Any]:
    """Reads PAGE_STATE until ``check(state)`` holds; returns that state."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = await asyncio.to_thread(driver.execute_script, PAGE_STATE)
        if check(state):
            return state
        if time.monotonic() > deadline:
            body = await asyncio.to_thread(lambda: driver.find_element(By.TAG_NAME, "body").text)
            raise AssertionError(f"page: {what}, not after {timeout} s\n{body}\n{console(driver)}")
        await asyncio.sleep(0.2)


@needs_chromium
@pytest.mark.timeout(90)
async def test_status_page_follows_a_scale_out_live(
    browser: WebDriver, tmp_path: Path, make_source: MakeSource
) -> None:
    origin = OriginProcess(tmp_path / "data", "--preset", "ultrafast").start()
    fleet_process: SurgeProcess | None = None
    crowd: Crowd | None = None
    players: list[asyncio.Task[None]] = []
    seen_edges: set[int] = set()  # this fleet's edge pids: other fleets may run on this machine at once
    fleet_pid = 0
    try:
        async with aiohttp.ClientSession() as session:
            _, title, _ = await upload(
                session, origin.url, make_source("tiny.mp4", width=160, height=120, duration=2), name="Tiny"
            )
            await wait_for_status(session, origin.url, title["id"], {"ready"}, timeout=30)
        hot = title["id"]

        fleet_process = await asyncio.to_thread(
            SurgeProcess("fleet", "--origin", origin.url, "--min-edges", "1", "--max-edges", "2",
                         "--edge-capacity", "20", "--scale-in-window", "120", "--cache-mem", "32MiB").start
        )  # fmt: skip
        fleet = fleet_process.url
        assert fleet_process.process is not None
        fleet_pid = fleet_process.process.pid

        def note_edges() -> None:
            seen_edges.update(edge_pids(fleet_pid).values())

        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=10)
        ) as session:
            [first] = (await fleet_state(session, fleet))["edges"]
            note_edges()

            # The page before any load: one active edge, its id and URL as /fleet reports them.
            await asyncio.to_thread(browser.get, f"{fleet}/")
            assert await asyncio.to_thread(lambda: browser.title) == "surge fleet"
            state = await page_until(browser, lambda s: s["rows"], 10, "an edge row")
            [row] = state["rows"]
            # The health verdict and its reason, on hover (late only on a machine too busy to poll in time).
            health = row.pop("health")
            verdict = r"(healthy: answered|late: last answer to) /stats \d+\.\d s ago"
            assert re.fullmatch(verdict, health), health
            assert row == {"id": first["id"], "state": "active", "url": first["url"],
                           "stateClass": "state-active", "dataEdge": first["id"]}  # fmt: skip
            assert state["count"] == "(1)"
            assert not any("scale-out" in event for event in state["events"])
            assert not state["decision"].startswith(("loading", "fleet unreachable")), state["decision"]

            # Load: a few players on the title, far above one edge's 20 req/s; the page follows.
            crowd = Crowd(fleet)
            players = [asyncio.create_task(crowd.player(session, hot, 0.05)) for _ in range(6)]
            started = time.monotonic()
            state = await page_until(
                browser,
                lambda s: (
                    len(s["rows"]) == 2
                    and all(r["state"] == "active" for r in s["rows"])
                    and any(" scale-out " in event for event in s["events"])
                    and any(line["dashed"] is False for line in s["lines"])
                ),
                25,
                "a second active edge, a scale-out event and a line for the hot title",
            )
            scaled_s = time.monotonic() - started
            note_edges()

            # The rows are the fleet's edges, live (no reload of the page happened).
            snapshot = await fleet_state(session, fleet)
            assert {(r["id"], r["url"]) for r in state["rows"]} == {
                (e["id"], e["url"]) for e in snapshot["edges"]
            }
            assert first["id"] in {r["id"] for r in state["rows"]}
            assert state["count"] == "(2)"
            assert all(r["stateClass"] == "state-active" for r in state["rows"])
            # Newest event first; the scale-out names the hot title, the new edge became active after it.
            events = state["events"]
            scale_out = next(i for i, e in enumerate(events) if " scale-out " in e)
            assert f"title={hot}" in events[scale_out] and "count=1" in events[scale_out]
            second = next(r["id"] for r in state["rows"] if r["id"] != first["id"])
            active = next(i for i, e in enumerate(events) if f" edge active {second} " in e)
            assert active < scale_out, events
            # The chart: the legend names the hot title; its solid line, in the legend's colour, has
            # climbed above zero (y = 200 is 0 req/s); the dashed line counts edges.
            titles = [entry for entry in state["legend"] if entry["text"].startswith("■ ")]
            assert [entry["text"] for entry in titles] == [f"■ {hot}"]
            [solid] = [line for line in state["lines"] if not line["dashed"]]
            assert await asyncio.to_thread(browser.execute_script, RGB, solid["stroke"]) == titles[0]["color"]
            assert min(y for _, y in solid["points"]) < 200, solid["points"]
            assert [line["dashed"] for line in state["lines"]].count(True) == 1
            assert len(solid["points"]) >= 2

            crowd.stop.set()
            await asyncio.gather(*players, return_exceptions=True)
            assert crowd.failures == [], crowd.failures[:5]
            assert crowd.served_by[first["id"]] > 0
        print(f"status page showed the second edge {scaled_s:.1f} s after the load began; {crowd.statuses}")
    finally:
        if crowd is not None:
            crowd.stop.set()
        for task in players:
            task.cancel()
        await asyncio.gather(*players, return_exceptions=True)
        try:
            if fleet_process is not None:
                assert await asyncio.to_thread(fleet_process.stop) == 0
        finally:
            await asyncio.to_thread(origin.stop)
    # None left as the fleet's children, nor re-parented to init (another run's orphans are not ours).
    assert len(seen_edges) >= 2 and edge_pids(fleet_pid) == {}, "edges left behind"
    assert not seen_edges & set(edge_pids(1).values()), "edges left behind, orphaned"
