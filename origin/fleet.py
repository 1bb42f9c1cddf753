"""The fleet in front of this origin, when it knows one (``surge up``, or ``surge origin --fleet URL``):
deleting a title purges it from every edge through the fleet's ``POST /admin/purge``."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web

from service.logs import log

logger = logging.getLogger("surge.origin")
PURGE_TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=2.0)  # the fleet's own fan-out takes 5 s


class FleetLink:
    """Where the fleet is; ``surge up`` sets ``url`` once the fleet listens (its port may be picked then)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url.rstrip("/") if url else None

    async def purge_title(self, title_id: str, token: str) -> dict[str, Any]:
        """The fleet's per-edge report, or ``{"ok": false, "error": ...}`` when the fleet did not answer."""
        assert self.url is not None
        body = {"prefix": f"/titles/{title_id}/"}
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=PURGE_TIMEOUT) as session,
                session.post(f"{self.url}/admin/purge", json=body, headers=headers) as response,
            ):
                try:
                    report = await response.json(content_type=None)
                except ValueError:
                    report = None
                if not isinstance(report, dict):
                    report = {"error": f"the fleet answered {response.status} without a JSON report"}
                report["ok"] = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as err:
            error = f"the fleet at {self.url} is unreachable: {err.__class__.__name__}"
            report = {"ok": False, "error": error}
        level = logging.INFO if report["ok"] else logging.WARNING
        log(logger, "fleet purge", level, title=title_id, fleet=self.url, ok=report["ok"],
            purged=report.get("purged"), error=report.get("error"))  # fmt: skip
        return report


FLEET_LINK = web.AppKey("fleet_link", FleetLink)
