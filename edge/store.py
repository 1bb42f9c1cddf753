"""Where cached objects live: a memory LRU bounded in bytes, and an optional disk tier bounded in bytes.

The memory tier is plain data structures (no I/O). The disk tier writes each body and a small JSON
sidecar with aiofiles, by rename, so that a restart can rebuild its index from what is complete on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mmap
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from edge.policy import Freshness

# Well under Linux's default of 65,530 memory maps per process.
MAX_MAPS = 10_000


@dataclass
class CachedObject:
    key: str
    status: int
    headers: dict[str, str]  # end-to-end response headers to replay, original case
    body: bytes | memoryview
    freshness: Freshness
    head: bytes = field(default=b"", init=False, repr=False, compare=False)  # the edge's rendered headers

    @property
    def size(self) -> int:
        return len(self.body)


class MemoryLRU:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._objects: OrderedDict[str, CachedObject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: str) -> bool:
        return key in self._objects

    def get(self, key: str) -> CachedObject | None:
        found = self._objects.get(key)
        if found is not None:
            self._objects.move_to_end(key)
        return found

    def put(self, obj: CachedObject) -> list[CachedObject]:
        """Store ``obj``; returns what was evicted to make room (oldest first)."""
        if obj.size > self.capacity:
            return []
        self.remove(obj.key)
        evicted = []
        while self.used + obj.size > self.capacity and self._objects:
            _, old = self._objects.popitem(last=False)
            self.used -= old.size
            evicted.append(old)
        self._objects[obj.key] = obj
        self.used += obj.size
        return evicted

    def remove(self, key: str) -> bool:
        old = self._objects.pop(key, None)
        if old is None:
            return False
        self.used -= old.size
        return True

    def cached_keys(self) -> list[str]:
        return list(self._objects)


def _freshness_to_json(f: Freshness) -> dict[str, object]:
    cc = f.cache_control
    return {
        "cache_control": cc.__dict__,
        "lifetime": f.lifetime,
        "initial_age": f.initial_age,
        "response_time": f.response_time,
        "etag": f.etag,
        "last_modified": f.last_modified,
    }


def _freshness_from_json(data: Mapping[str, Any]) -> Freshness:
    """From our own index file (``_freshness_json``); a damaged one raises and the entry is dropped."""
    from edge.policy import CacheControl

    return Freshness(
        cache_control=CacheControl(**data["cache_control"]),
        lifetime=float(data["lifetime"]),
        initial_age=float(data["initial_age"]),
        response_time=float(data["response_time"]),
        etag=_optional_text(data["etag"]),
        last_modified=_optional_text(data["last_modified"]),
    )


def _optional_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a string or null, got {value!r}")


@dataclass
class DiskEntry:
    key: str
    path: Path
    size: int
    status: int
    headers: dict[str, str]
    freshness: Freshness
    head: bytes = field(default=b"", init=False, repr=False, compare=False)  # the edge's rendered headers


class DiskTier:
    """Bodies in ``<dir>/<hh>/<sha256>.body`` beside ``.json`` metadata; LRU by our own index."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self.used = 0
        self._index: OrderedDict[str, DiskEntry] = OrderedDict()
        self._maps: dict[str, mmap.mmap] = {}  # dropped on removal; unmapped once no response uses it

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def _paths(self, key: str) -> tuple[Path, Path]:
        digest = hashlib.sha256(key.encode()).hexdigest()
        folder = self.directory / digest[:2]
        return folder / f"{digest}.body", folder / f"{digest}.json"

    def rebuild(self) -> int:
        """Blocking, at start-up: index what is complete on disk, delete what is not. Returns entries kept."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found = []
        for meta_path in self.directory.glob("*/*.json"):
            body_path = meta_path.with_suffix(".body")
            try:
                meta = json.loads(meta_path.read_text())
                size = body_path.stat().st_size
                if size != meta["size"] or self._paths(meta["key"])[0] != body_path:
                    raise ValueError("size or name mismatch")
                entry = DiskEntry(
                    key=meta["key"],
                    path=body_path,
                    size=size,
                    status=int(meta["status"]),
                    headers=dict(meta["headers"]),
                    freshness=_freshness_from_json(meta["freshness"]),
                )
            except (OSError, ValueError, KeyError, TypeError):
                meta_path.unlink(missing_ok=True)
                body_path.unlink(missing_ok=True)
                continue
            found.append((meta_path.stat().st_mtime, entry))
        for leftover in self.directory.glob("*/*.tmp"):
            leftover.unlink(missing_ok=True)
        for _, entry in sorted(found, key=lambda pair: pair[0]):
            self._index[entry.key] = entry
            self.used += entry.size
        return len(self._index)

    def get(self, key: str) -> DiskEntry | None:
        found = self._index.get(key)
        if found is not None:
            self._index.move_to_end(key)
        return found

    def mapped(self, entry: DiskEntry) -> memoryview | None:
        """The body as a read-only map of the file (as Varnish's file storage does): no read into memory,
        no thread; the kernel copies from the page cache straight into the socket. The map is kept for
        later hits. None when the file is gone or damaged."""
        mapped = self._maps.get(entry.key)
        if mapped is None:
            try:
                with entry.path.open("rb") as handle:
                    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None
            if len(mapped) != entry.size:
                return None
            if len(self._maps) >= MAX_MAPS:
                self._maps.clear()  # each map is released once no response uses it any more
            self._maps[entry.key] = mapped
        return memoryview(mapped)

    async def read(self, entry: DiskEntry) -> memoryview | None:
        """``mapped``, and a damaged entry dropped."""
        body = self.mapped(entry)
        if body is None:
            await self.remove(entry.key)
        return body

    async def put(self, obj: CachedObject) -> None:
        if obj.size > self.capacity:
            return
        body_path, meta_path = self._paths(obj.key)
        await aiofiles.os.makedirs(body_path.parent, exist_ok=True)
        await self.remove(obj.key)
        while self.used + obj.size > self.capacity and self._index:
            oldest = next(iter(self._index))
            await self.remove(oldest)
        temporary = body_path.with_suffix(f".{os.getpid()}.tmp")
        async with aiofiles.open(temporary, "wb") as handle:
            await handle.write(obj.body)
        await aiofiles.os.replace(temporary, body_path)
        meta = {
            "key": obj.key,
            "size": obj.size,
            "status": obj.status,
            "headers": obj.headers,
            "freshness": _freshness_to_json(obj.freshness),
        }
        async with aiofiles.open(meta_path.with_suffix(".json.tmp"), "w") as handle:
            await handle.write(json.dumps(meta))
        # The metadata appears last: an entry is complete on disk exactly when its .json exists.
        await aiofiles.os.replace(meta_path.with_suffix(".json.tmp"), meta_path)
        self._index[obj.key] = DiskEntry(obj.key, body_path, obj.size, obj.status, obj.headers, obj.freshness)
        self.used += obj.size

    async def remove(self, key: str) -> bool:
        self._maps.pop(key, None)
        entry = self._index.pop(key, None)
        if entry is None:
            return False
        self.used -= entry.size
        body_path, meta_path = self._paths(key)
        await asyncio.to_thread(meta_path.unlink, missing_ok=True)
        await asyncio.to_thread(body_path.unlink, missing_ok=True)
        return True

    def cached_keys(self) -> list[str]:
        return list(self._index)
