"""The origin's /readyz (store and library) beside /healthz (alive), against a real origin process."""

from __future__ import annotations

from tests.conftest import json_of
from tests.origin.conftest import OriginProcess


async def test_ready_while_its_library_is_in_place(origin: OriginProcess) -> None:
    ready = {"status": "ready", "checks": {"store": "ok", "library": "ok"}}
    assert await json_of(f"{origin.url}/readyz") == (200, ready)
    (origin.data / "titles").rmdir()  # an operator's mistake, a volume gone
    status, body = await json_of(f"{origin.url}/readyz")
    assert status == 503 and body["status"] == "not ready" and body["checks"]["store"] == "ok"
    assert body["checks"]["library"] == f"{origin.data / 'titles'} is not a directory"
    assert (await json_of(f"{origin.url}/healthz")) == (200, {"status": "ok"})
