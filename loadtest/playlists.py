"""Playlist text → what a virtual player needs: ladders per pathway and segment timelines, URLs resolved.

Rules of this file: no I/O. Parsing is ``media.hls``'s; this adds URL resolution (RFC 3986 5, via yarl),
ladders grouped by Content Steering pathway (and pathways cloned by the steering manifest), and the
relative ``nor`` reference of each next segment (CMCD). Results are cached by (text, URL): thousands of
players fetch the same few playlists.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, replace
from functools import lru_cache

from yarl import URL

from loadtest.steering import DEFAULT_PATHWAY, PathwayClone
from media.hls import ContentSteering, MasterPlaylist, Variant, parse_master, parse_media

_EPSILON = 1e-3  # seconds; EXTINF sums drift by float rounding


@dataclass(frozen=True)
class Timeline:
    """Segment start times and durations of one media playlist (seconds of media)."""

    durations: tuple[float, ...]
    starts: tuple[float, ...]
    has_init: bool = False

    @classmethod
    def of(cls, durations: tuple[float, ...], has_init: bool = False) -> Timeline:
        starts, position = [], 0.0
        for duration in durations:
            starts.append(position)
            position += duration
        return cls(durations, tuple(starts), has_init)

    @property
    def total(self) -> float:
        return self.starts[-1] + self.durations[-1] if self.durations else 0.0

    def index_at(self, position: float) -> int:
        """The segment that plays at ``position``; the first one starting there on a boundary."""
        return max(0, min(bisect.bisect_right(self.starts, position + _EPSILON) - 1, len(self.starts) - 1))

    def end_of(self, index: int) -> float:
        return self.starts[index] + self.durations[index]


@dataclass(frozen=True)
class Rendition:
    bitrate: int  # AVERAGE-BANDWIDTH when given, else BANDWIDTH: what ABR and the average bitrate use
    bandwidth: int
    label: str
    url: str
    audio_url: str | None


@dataclass(frozen=True)
class Master:
    pathways: dict[str, tuple[Rendition, ...]]  # each ladder by ascending bitrate
    steering: ContentSteering | None  # SERVER-URI resolved against the master's URL
    first_pathway: str
    hosts: frozenset[str]  # every host it points at

    def ladder(self, pathway: str) -> tuple[Rendition, ...]:
        return self.pathways.get(pathway) or self.pathways[self.first_pathway]

    def with_clones(self, clones: tuple[PathwayClone, ...]) -> Master:
        """Pathways added by a steering manifest: a known one's URIs with HOST and PARAMS replaced."""
        pathways = dict(self.pathways)
        for clone in clones:
            base = pathways.get(clone.base_id)
            if base is None or clone.id in pathways:
                continue
            pathways[clone.id] = tuple(
                replace(
                    r,
                    url=_replace_uri(r.url, clone),
                    audio_url=_replace_uri(r.audio_url, clone) if r.audio_url else None,
                )
                for r in base
            )
        if len(pathways) == len(self.pathways):
            return self
        urls = [u for ladder in pathways.values() for r in ladder for u in (r.url, r.audio_url) if u]
        return replace(self, pathways=pathways, hosts=self.hosts | _hosts(urls))


def _replace_uri(uri: str, clone: PathwayClone) -> str:
    url = URL(uri)
    if clone.host:
        # HOST may carry a port (hls.js assigns it to URL.host): "127.0.0.1:8101".
        given = URL(f"//{clone.host}")
        url = url.with_host(given.host or "").with_port(given.explicit_port)
    if clone.params:
        url = url.update_query(dict(clone.params))
    return str(url)


@dataclass(frozen=True)
class Media:
    timeline: Timeline
    urls: tuple[str, ...]
    ranges: tuple[str | None, ...]  # Range header of each segment, for EXT-X-BYTERANGE
    next_refs: tuple[str, ...]  # segment i+1 relative to segment i ("" for the last): CMCD nor
    init_url: str | None
    hosts: frozenset[str]


def _label(variant: Variant, same_height: bool) -> str:
    height = variant.resolution[1]
    kbps = f"{(variant.average_bandwidth or variant.bandwidth) // 1000}k"
    if not height:
        return kbps
    return f"{height}p {kbps}" if same_height else f"{height}p"


def _audio_url(master: MasterPlaylist, variant: Variant, base: URL) -> str | None:
    group = [a for a in master.audio if a.group_id == variant.audio_group and a.uri]
    if not group:
        return None
    chosen = next((a for a in group if a.default), group[0])
    return str(base.join(URL(chosen.uri)))


@lru_cache(maxsize=256)
def read_master(text: str, url: str) -> Master:
    base = URL(url)
    master = parse_master(text)
    grouped: dict[str, list[Variant]] = {}
    for variant in master.variants:
        grouped.setdefault(variant.pathway_id or DEFAULT_PATHWAY, []).append(variant)
    pathways: dict[str, tuple[Rendition, ...]] = {}
    for pathway, variants in grouped.items():
        variants.sort(key=lambda v: (v.average_bandwidth or v.bandwidth, v.bandwidth))
        heights = [v.resolution[1] for v in variants]
        pathways[pathway] = tuple(
            Rendition(
                bitrate=v.average_bandwidth or v.bandwidth,
                bandwidth=v.bandwidth,
                label=_label(v, heights.count(v.resolution[1]) > 1),
                url=str(base.join(URL(v.uri))),
                audio_url=_audio_url(master, v, base),
            )
            for v in variants
        )
    steering = master.content_steering
    first = next(iter(pathways))
    if steering is not None:
        steering = ContentSteering(str(base.join(URL(steering.server_uri))), steering.pathway_id)
        if steering.pathway_id is not None and steering.pathway_id in pathways:
            first = steering.pathway_id
    urls = [u for ladder in pathways.values() for r in ladder for u in (r.url, r.audio_url) if u]
    if steering is not None:
        urls.append(steering.server_uri)
    return Master(pathways, steering, first, _hosts(urls))


def _hosts(urls: list[str]) -> frozenset[str]:
    return frozenset(URL(u).host or "" for u in urls)


def relative_ref(source: URL, target: URL) -> str:
    """``target`` as a reference relative to ``source``: a file name in the same directory, else a path."""
    if source.origin() != target.origin():
        return str(target)
    query = f"?{target.raw_query_string}" if target.raw_query_string else ""
    directory = source.raw_path.rpartition("/")[0]
    head, _, name = target.raw_path.rpartition("/")
    return (name if head == directory else target.raw_path) + query


@lru_cache(maxsize=1024)
def read_media(text: str, url: str) -> Media:
    base = URL(url)
    playlist = parse_media(text)
    urls = [base.join(URL(segment.uri)) for segment in playlist.segments]
    ranges = tuple(
        f"bytes={s.byterange.offset}-{s.byterange.offset + s.byterange.length - 1}" if s.byterange else None
        for s in playlist.segments
    )
    next_refs = (*(relative_ref(a, b) for a, b in itertools.pairwise(urls)), "")
    init_url = str(base.join(URL(playlist.map_uri))) if playlist.map_uri else None
    return Media(
        timeline=Timeline.of(tuple(s.duration for s in playlist.segments), playlist.map_uri is not None),
        urls=tuple(str(u) for u in urls),
        ranges=ranges,
        next_refs=next_refs if urls else (),
        init_url=init_url,
        hosts=frozenset(u.host or "" for u in urls) | (_hosts([init_url]) if init_url else frozenset()),
    )
