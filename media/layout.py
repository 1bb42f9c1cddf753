"""The on-disk library under a data root, and path joins that can never leave it.

Layout (DESIGN.md): ``titles/<id>/`` published titles, ``staging/<id>.<n>/`` work in progress,
``sources/<id>/source`` originals, ``uploads/<uuid>.part`` uploads in flight, ``jobs.sqlite``,
``admin.token``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from media.errors import InvalidInput, NotFound
from media.ids import is_title_id, validate_title_id

# One path component of a published file: rendition names and file names such as seg_00001.m4s.
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The public URLs of published files, as routes: the origin and the edges serve the same ones.
MASTER_ROUTE = "/titles/{title_id}/master.m3u8"
FILE_ROUTE = "/titles/{title_id}/{rendition}/{file}"
SIGNED_ROUTE = "/t/{token}"  # before either of them: a signed URL (media.signing)


def delivery_route(path: str) -> str:
    """Which of the two routes an already checked ``/titles/<id>/...`` path is (its metrics label)."""
    return MASTER_ROUTE if path.count("/") == 3 else FILE_ROUTE


def is_safe_component(text: str) -> bool:
    return _COMPONENT.fullmatch(text) is not None and ".." not in text


@dataclass(frozen=True)
class DeliveryPath:
    """A checked ``/titles/<id>/master.m3u8`` or ``/titles/<id>/<rendition>/<file>``."""

    title_id: str
    components: tuple[str, ...]  # (file,) beside the master, or (rendition, file)

    @property
    def path(self) -> str:
        return "/".join(("", "titles", self.title_id, *self.components))


def delivery_path(title_id: str, *components: str) -> DeliveryPath | None:
    """The one check of a delivery path's parts (origin, edge and fleet): a title id, then one or two
    plain names; None when any part is not."""
    if not is_title_id(title_id) or len(components) not in (1, 2):
        return None
    if not all(is_safe_component(component) for component in components):
        return None
    return DeliveryPath(title_id, components)


def parse_delivery_path(path: str) -> DeliveryPath | None:
    """``/titles/<id>/...`` checked by ``delivery_path``; None for anything else."""
    parts = path.split("/")
    if len(parts) < 4 or parts[0] or parts[1] != "titles":
        return None
    return delivery_path(parts[2], *parts[3:])


def title_of(path: str) -> str:
    """``/titles/<id>/...`` → ``<id>``; the path is already validated."""
    return path.split("/", 3)[2]


def is_delivery_path(path: str) -> bool:
    return parse_delivery_path(path) is not None


def validate_delivery_path(path: str) -> DeliveryPath:
    checked = parse_delivery_path(path)
    if checked is None:
        raise InvalidInput("invalid path")
    return checked


def validate_delivery_parts(title_id: str, *components: str) -> DeliveryPath:
    checked = delivery_path(title_id, *components)
    if checked is None:
        raise InvalidInput("invalid path")
    return checked


def safe_join(root: Path, *components: str) -> Path:
    """``root / c1 / c2 ...`` where every component is a plain name; raises instead of escaping ``root``."""
    for component in components:
        if not is_safe_component(component):
            raise InvalidInput(f"invalid path component {component!r}")
    path = root.joinpath(*components)
    # Belt and braces: a symlink planted inside the library must not lead outside it either.
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise NotFound("not found")
    return path


@dataclass(frozen=True)
class Library:
    root: Path

    @property
    def titles_dir(self) -> Path:
        return self.root / "titles"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def admin_token_path(self) -> Path:
        return self.root / "admin.token"

    @property
    def jobs_db_path(self) -> Path:
        return self.root / "jobs.sqlite"

    def title_dir(self, title_id: str) -> Path:
        return self.titles_dir / validate_title_id(title_id)

    def source_path(self, title_id: str) -> Path:
        return self.sources_dir / validate_title_id(title_id) / "source"

    def title_file(self, title_id: str, *components: str) -> Path:
        """A file of a published title, e.g. ``("360p", "seg_00001.m4s")``; never outside the title."""
        return safe_join(self.title_dir(title_id), *components)

    def ensure_dirs(self) -> None:
        for directory in (self.titles_dir, self.staging_dir, self.sources_dir, self.uploads_dir):
            directory.mkdir(parents=True, exist_ok=True)
