"""Delivery paths as the edge sees them: which it serves, and the title a path belongs to."""

from __future__ import annotations

from media.errors import InvalidInput
from media.ids import is_title_id
from media.layout import is_safe_component


def title_of(path: str) -> str:
    """``/titles/<id>/...`` → ``<id>``; the path is already validated."""
    return path.split("/", 3)[2]


def is_delivery_path(path: str) -> bool:
    """``/titles/<id>/master.m3u8`` or ``/titles/<id>/<rendition>/<file>``, every component safe."""
    parts = path.split("/")
    if len(parts) not in (4, 5) or parts[1] != "titles" or not is_title_id(parts[2]):
        return False
    return all(is_safe_component(part) for part in parts[3:])


def validate_path(path: str) -> None:
    if not is_delivery_path(path):
        raise InvalidInput("invalid path")
