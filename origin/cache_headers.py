"""Response headers of published files, decided from the file name alone (pure)."""

from __future__ import annotations

from pathlib import PurePosixPath

SEGMENT_CACHE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
}
EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Age, Content-Encoding"


def delivery_headers(file_name: str, playlist_max_age: int) -> dict[str, str] | None:
    """Content-Type and Cache-Control for a file we serve, or None when it is not ours to serve."""
    suffix = PurePosixPath(file_name).suffix
    content_type = CONTENT_TYPES.get(suffix)
    if content_type is None:
        return None
    if suffix == ".m3u8":
        # Playlists are served gzipped to clients that accept it (Apple HLS authoring spec 10.1).
        return {"Content-Type": content_type, "Cache-Control": f"public, max-age={playlist_max_age}",
                "Vary": "Accept-Encoding"}  # fmt: skip
    return {"Content-Type": content_type, "Cache-Control": SEGMENT_CACHE}


def cors_headers(allow_origin: str) -> dict[str, str]:
    if not allow_origin:
        return {}
    return {"Access-Control-Allow-Origin": allow_origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS}


def preflight_headers(allow_origin: str, requested_headers: str | None) -> dict[str, str]:
    if not allow_origin:
        return {}
    return cors_headers(allow_origin) | {
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": requested_headers or "Range, If-None-Match, If-Modified-Since",
        "Access-Control-Max-Age": "86400",
    }
