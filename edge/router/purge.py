"""Purge across the fleet: one ``POST /admin/purge`` to every edge at once, each bounded in time, and a
report per edge. The outcomes are a closed type; the report (status and body) is a pure function of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from edge.purge import PurgeRequest

PURGE_TIMEOUT = aiohttp.ClientTimeout(total=5.0, sock_connect=2.0)


@dataclass(frozen=True)
class EdgePurged:
    edge: str
    url: str
    purged: int


@dataclass(frozen=True)
class EdgeFailed:
    edge: str
    url: str
    error: str
    status: int | None = None  # the edge's HTTP status; None when it did not answer


EdgeOutcome = EdgePurged | EdgeFailed


def outcome_json(outcome: EdgeOutcome) -> dict[str, Any]:
    match outcome:
        case EdgePurged(edge, url, purged):
            return {"id": edge, "url": url, "ok": True, "purged": purged}
        case EdgeFailed(edge, url, error, status):
            return {"id": edge, "url": url, "ok": False, "status": status, "error": error}


def purge_report(outcomes: Sequence[EdgeOutcome]) -> tuple[int, dict[str, Any]]:
    """200 when every edge purged; 502 with the same per-edge report when any did not."""
    failed = sum(isinstance(o, EdgeFailed) for o in outcomes)
    body: dict[str, Any] = {
        "purged": sum(o.purged for o in outcomes if isinstance(o, EdgePurged)),
        "edges": [outcome_json(o) for o in outcomes],
        "failed": failed,
    }
    if failed:
        body["error"] = f"{failed} of {len(outcomes)} edge(s) did not purge"
    return (502 if failed else 200), body


async def purge_edge(
    session: aiohttp.ClientSession, edge: str, url: str, token: str, wanted: PurgeRequest
) -> EdgeOutcome:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with session.post(
            f"{url}/admin/purge", json=wanted.as_json(), headers=headers, timeout=PURGE_TIMEOUT
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            if response.status == 200 and isinstance(body, dict) and isinstance(body.get("purged"), int):
                return EdgePurged(edge, url, body["purged"])
            error = body.get("error") if isinstance(body, dict) else None
            message = str(error or f"the edge answered {response.status}")
            return EdgeFailed(edge, url, message, response.status)
    except TimeoutError:
        return EdgeFailed(edge, url, f"no answer within {PURGE_TIMEOUT.total:g} s")
    except aiohttp.ClientError as err:
        return EdgeFailed(edge, url, f"unreachable: {err.__class__.__name__}")


async def purge_fleet(
    session: aiohttp.ClientSession, edges: Sequence[tuple[str, str]], token: str, wanted: PurgeRequest
) -> list[EdgeOutcome]:
    """``edges`` as (id, url) pairs; every edge at once, so the whole fan-out takes one edge's bound."""
    return list(await asyncio.gather(*(purge_edge(session, e, u, token, wanted) for e, u in edges)))
