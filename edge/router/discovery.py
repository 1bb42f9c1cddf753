"""Prometheus HTTP service discovery (``http_sd_config``): every edge of the fleet, and the fleet itself,
as target groups, so that edges on ports picked at start are scraped without configuration.

The format (Prometheus docs, "HTTP SD"): a JSON list of ``{"targets": ["host:port"], "labels": {...}}``;
``__scheme__`` and ``__metrics_path__`` are the scrape settings Prometheus reads from labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    role: str  # "edge" or "fleet"
    id: str
    url: str  # the advertised base URL, http(s)://host:port
    state: str


def target_groups(targets: Sequence[Target]) -> list[dict[str, Any]]:
    groups = []
    for target in targets:
        parts = urlsplit(target.url)
        groups.append(
            {
                "targets": [parts.netloc],
                "labels": {
                    "__scheme__": parts.scheme,
                    "__metrics_path__": "/metrics",
                    "surge_role": target.role,
                    "surge_id": target.id,
                    "surge_state": target.state,
                },
            }
        )
    return groups
