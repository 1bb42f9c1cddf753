"""HLS Content Steering, the client side (draft-pantos-hls-rfc8216bis 4.4.6.6 and 7.2).

Rules of this file: text in, values out. ``media.hls`` parses the tag and each variant's PATHWAY-ID; this
reads the steering manifest, picks the pathway, and writes the manifest request. PATHWAY-CLONES are
read with their URI-REPLACEMENT ``HOST`` and ``PARAMS`` (surge's fleet sends new edges that way);
``PER-VARIANT-URIS`` / ``PER-RENDITION-URIS`` need STABLE-VARIANT-ID, which the model does not carry.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from media.errors import InvalidPlaylist

DEFAULT_PATHWAY = "."  # RFC 8216bis 4.4.6.6: a variant without PATHWAY-ID belongs to "."
DEFAULT_TTL = 300.0


class InvalidSteering(InvalidPlaylist):
    """A steering manifest that is not JSON of the documented shape."""


@dataclass(frozen=True)
class PathwayClone:
    base_id: str
    id: str
    host: str | None = None  # replaces host[:port] of every URI of the base pathway
    params: tuple[tuple[str, str], ...] = ()  # query parameters added to them


@dataclass(frozen=True)
class SteeringManifest:
    ttl: float
    priority: tuple[str, ...]
    reload_uri: str | None = None
    clones: tuple[PathwayClone, ...] = ()


def _clone(item: Any) -> PathwayClone:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("BASE-ID"), str)
        or not isinstance(item.get("ID"), str)
    ):
        raise InvalidSteering("a PATHWAY-CLONES entry needs string BASE-ID and ID")
    replacement = item.get("URI-REPLACEMENT", {})
    if not isinstance(replacement, dict):
        raise InvalidSteering("URI-REPLACEMENT must be an object")
    host = replacement.get("HOST")
    params = replacement.get("PARAMS", {})
    if (host is not None and not isinstance(host, str)) or not isinstance(params, dict):
        raise InvalidSteering("URI-REPLACEMENT HOST must be a string and PARAMS an object")
    return PathwayClone(item["BASE-ID"], item["ID"], host, tuple((str(k), str(v)) for k, v in params.items()))


def parse_manifest(text: str) -> SteeringManifest:
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidSteering("steering manifest is not JSON") from None
    if not isinstance(document, dict) or document.get("VERSION") != 1:
        raise InvalidSteering("steering manifest without VERSION 1")
    priority = document.get("PATHWAY-PRIORITY")
    if not isinstance(priority, list) or not priority or not all(isinstance(p, str) for p in priority):
        raise InvalidSteering("steering manifest without a PATHWAY-PRIORITY list of strings")
    ttl = document.get("TTL", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise InvalidSteering(f"steering manifest TTL must be a positive number, not {ttl!r}")
    reload_uri = document.get("RELOAD-URI")
    clones = document.get("PATHWAY-CLONES", [])
    if not isinstance(clones, list):
        raise InvalidSteering("PATHWAY-CLONES must be a list")
    return SteeringManifest(
        ttl=float(ttl),
        priority=tuple(priority),
        reload_uri=reload_uri if isinstance(reload_uri, str) and reload_uri else None,
        clones=tuple(_clone(item) for item in clones),
    )


def choose_pathway(priority: Collection[str], available: Collection[str], current: str) -> str:
    """The first pathway in priority order that the player knows; otherwise keep the current one."""
    for pathway in priority:
        if pathway in available:
            return pathway
    return current


def steering_request_url(uri: str, pathway: str, throughput_bps: float | None) -> str:
    """The manifest URL with the client's state: ``_HLS_pathway`` and ``_HLS_throughput`` (bit/s)."""
    query = f"_HLS_pathway={quote(pathway, safe='')}"
    if throughput_bps is not None:
        query += f"&_HLS_throughput={int(throughput_bps)}"
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
