"""Response headers of published files, decided from the file name alone (pure)."""

from __future__ import annotations

from pathlib import PurePosixPath

SEGMENT_CACHE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
}


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
