"""Which objects to fill ahead of the players (pure).

From a media playlist the edge has seen: segment N is followed by N+1 ... N+K. From CMCD (CTA-5004),
a player may also name its next object itself (``nor``), in the ``CMCD`` query argument or header.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

from media.hls.model import MediaPlaylist

MAX_MAP_ENTRIES = 200_000


def resolve(base_path: str, uri: str) -> str | None:
    """An edge-local path for a playlist URI relative to ``base_path``'s directory; None if it leaves it."""
    if "://" in uri or uri.startswith("/") or "?" in uri or "#" in uri:
        return None
    directory = posixpath.dirname(base_path)
    joined = posixpath.normpath(posixpath.join(directory, uri))
    return joined if joined.startswith("/titles/") else None


def next_segments(playlist_path: str, playlist: MediaPlaylist, k: int) -> dict[str, tuple[str, ...]]:
    """segment path → the paths of the ``k`` segments after it."""
    if k <= 0:
        return {}
    paths = [resolve(playlist_path, segment.uri) for segment in playlist.segments]
    result = {}
    for index, path in enumerate(paths):
        if path is None:
            continue
        following = tuple(p for p in paths[index + 1 : index + 1 + k] if p is not None)
        if following:
            result[path] = following
    return result


def cmcd_next_object(cmcd: str | None, request_path: str) -> str | None:
    """The ``nor`` key of CMCD data (``br=800,nor="seg_00002.m4s",sid="x"``) as an edge path."""
    if not cmcd:
        return None
    for pair in _split_cmcd(cmcd):
        key, _, value = pair.partition("=")
        if key.strip() == "nor" and value:
            return resolve(request_path, unquote(value.strip().strip('"')))
    return None


def _split_cmcd(text: str) -> list[str]:
    """Split on commas outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
