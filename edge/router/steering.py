"""What the router tells players (pure): master playlists pointing at edges, and HLS Content Steering.

With steering, every edge is a pathway: the master lists each variant once per pathway (``PATHWAY-ID``,
absolute URIs on that edge), and the steering manifest orders the pathways per session, so the players
of a hot title spread over its edges and move when edges come or go, without restarting playback.
Edges added after a player loaded its master reach it as ``PATHWAY-CLONES`` (URI-REPLACEMENT HOST).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from media.hls.model import ContentSteering, MasterPlaylist

STEERING_TTL_S = 5


@dataclass(frozen=True)
class EdgeRef:
    id: str
    url: str  # http://host:port

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


def absolute(edge: EdgeRef, title_id: str, uri: str) -> str:
    return f"{edge.url}/titles/{title_id}/{uri}"


def master_for_edges(
    master: MasterPlaylist, title_id: str, edges: list[EdgeRef], steering_uri: str | None
) -> MasterPlaylist:
    """The origin's master, its URIs made absolute on ``edges`` (first = preferred).

    Without ``steering_uri`` only the first edge is used; with it, one pathway per edge.
    """
    if not edges:
        raise ValueError("no edge to point at")
    chosen = edges if steering_uri is not None else edges[:1]
    variants, audio, iframes = [], [], []
    for edge in chosen:
        pathway = edge.id if steering_uri is not None else None

        def group(name: str | None, edge_id: str = edge.id) -> str | None:
            # Each pathway has its own audio group: the same rendition at another edge's URI.
            return f"{name}-{edge_id}" if name is not None and steering_uri is not None else name

        variants += [
            replace(
                v, uri=absolute(edge, title_id, v.uri), audio_group=group(v.audio_group), pathway_id=pathway
            )
            for v in master.variants
        ]
        audio += [replace(a, uri=absolute(edge, title_id, a.uri), group_id=group(a.group_id) or a.group_id)
                  for a in master.audio]  # fmt: skip
        iframes += [
            replace(i, uri=absolute(edge, title_id, i.uri), pathway_id=pathway)
            for i in master.iframe_variants
        ]
    steering = ContentSteering(steering_uri, chosen[0].id) if steering_uri is not None else None
    return replace(
        master,
        variants=tuple(variants),
        audio=tuple(audio),
        iframe_variants=tuple(iframes),
        content_steering=steering,
    )


def session_priority(title_edges: list[str], active: list[str], session: str) -> list[str]:
    """Pathway order for one player: the title's edges rotated by the session (spreading players over
    them), then every other active edge as a fallback."""
    if not title_edges:
        return list(active)
    turn = int.from_bytes(hashlib.blake2b(session.encode(), digest_size=4).digest(), "big") % len(title_edges)
    rotated = title_edges[turn:] + title_edges[:turn]
    return rotated + [edge for edge in active if edge not in rotated]


def steering_manifest(
    priority: list[str],
    known: list[str],
    edges: dict[str, EdgeRef],
    reload_uri: str,
    ttl: int = STEERING_TTL_S,
) -> dict[str, object]:
    """The steering manifest (RFC 8216bis 7.2): pathways the player does not know yet become clones of
    one it does, with that edge's host put in."""
    manifest: dict[str, object] = {"VERSION": 1, "TTL": ttl, "RELOAD-URI": reload_uri}
    base = next((pathway for pathway in known if pathway), None)
    clones = []
    for pathway in priority:
        if pathway not in known and base is not None and pathway in edges:
            clones.append({"BASE-ID": base, "ID": pathway, "URI-REPLACEMENT": {"HOST": edges[pathway].host}})
    usable = [p for p in priority if p in known or any(c["ID"] == p for c in clones)]
    manifest["PATHWAY-PRIORITY"] = usable or priority
    if clones:
        manifest["PATHWAY-CLONES"] = clones
    return manifest
