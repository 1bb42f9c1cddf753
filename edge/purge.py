"""What a purge asks for: the body of ``POST /admin/purge`` on an edge and on the fleet, checked once.

``{"paths": ["/titles/<id>/<rendition>/<file>", ...]}`` names objects, ``{"prefix": "/titles/<id>/"}``
everything below a title (or a rendition); both may be given, one of them must be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from media.errors import InvalidInput
from media.layout import is_delivery_path
from service.auth import TOKEN_ENV

PURGE_DISABLED = f"purging is disabled: start the server with {TOKEN_ENV} or --admin-token"
USAGE = '{"paths": ["/titles/<id>/..."]} or {"prefix": "/titles/<id>/"}'


@dataclass(frozen=True)
class PurgeRequest:
    paths: tuple[str, ...] = ()
    prefix: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"paths": list(self.paths)}
        if self.prefix is not None:
            body["prefix"] = self.prefix
        return body

    def titles(self) -> set[str]:
        """The titles the purge touches (``/titles/<id>/...`` → ``<id>``)."""
        return {path.split("/", 3)[2] for path in (*self.paths, *([self.prefix] if self.prefix else []))}


def parse_purge(body: object) -> PurgeRequest:
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object: {USAGE}")
    unknown = set(body) - {"paths", "prefix"}
    if unknown:
        raise InvalidInput(f"unknown keys {sorted(unknown)}: the body is {USAGE}")
    paths, prefix = body.get("paths", []), body.get("prefix")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidInput("paths must be a list of strings")
    for path in paths:
        if not is_delivery_path(path):
            raise InvalidInput(f"invalid path {path!r}: expected /titles/<id>/<rendition>/<file>")
    if prefix is not None and not (
        isinstance(prefix, str) and prefix.endswith("/") and is_delivery_path(prefix + "x")
    ):
        raise InvalidInput(f"invalid prefix {prefix!r}: expected /titles/<id>/ or /titles/<id>/<rendition>/")
    if not paths and prefix is None:
        raise InvalidInput(f"nothing to purge: the body is {USAGE}")
    return PurgeRequest(tuple(paths), prefix)
