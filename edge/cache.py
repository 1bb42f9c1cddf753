"""The edge's cache: a memory tier and an optional disk tier, looked up and stored as one.

Rules of this file: no HTTP, no upstreams; what to store and when is decided by the filler
(``edge.filler``) and ``edge.policy``; answers are the server's (``edge.proxy``).
"""

from __future__ import annotations

import asyncio
import logging

from edge.answer import Body, Stored
from edge.config import EdgeConfig
from edge.store import CachedObject, DiskTier, MemoryLRU
from service.logs import log
from service.tasks import BackgroundTasks

logger = logging.getLogger("surge.edge")


class Cache:
    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.memory = MemoryLRU(config.cache_mem)
        self.disk = (
            DiskTier(config.cache_dir, config.cache_disk) if config.cache_dir and config.cache_disk else None
        )
        self._writes = BackgroundTasks(logger, "disk write")

    @property
    def largest_cacheable(self) -> float:
        disk = self.disk.capacity if self.disk is not None else 0
        return max(self.memory.capacity, disk) * self.config.max_object_share

    def fits_memory(self, size: int) -> bool:
        """Small enough for the memory tier; a larger object passes through it (``max_object_share``)."""
        return size <= self.memory.capacity * self.config.max_object_share

    def __contains__(self, key: str) -> bool:
        return key in self.memory or (self.disk is not None and key in self.disk)

    async def start(self) -> None:
        if self.disk is not None:
            kept = await asyncio.to_thread(self.disk.rebuild)
            log(logger, "disk cache index rebuilt", entries=kept, bytes=self.disk.used)

    async def stop(self) -> None:
        await self._writes.close()

    async def lookup(self, key: str) -> CachedObject | None:
        found = self.memory.get(key)
        if found is not None or self.disk is None:
            return found
        entry = self.disk.get(key)
        if entry is None:
            return None
        body = await self.disk.read(entry)
        if body is None:
            return None
        obj = CachedObject(key, entry.status, entry.headers, body, entry.freshness)
        if self.fits_memory(obj.size):
            # Promote a copy: the next hit is served from memory, whatever happens to the file.
            self.memory.put(CachedObject(key, entry.status, entry.headers, bytes(body), entry.freshness))
        return obj

    def stored_now(self, key: str) -> tuple[Stored, Body] | None:
        """What ``found`` would find without waiting: a memory object, or a disk-tier body already
        mapped or mappable now that is too large to be promoted to memory (``found`` promotes the rest)."""
        obj = self.memory.get(key)
        if obj is not None:
            return obj, obj.body
        if self.disk is None:
            return None
        entry = self.disk.get(key)
        if entry is None or self.fits_memory(entry.size):
            return None
        body = self.disk.mapped(entry)
        return (entry, body) if body is not None else None

    async def found(self, key: str) -> tuple[Stored, Body] | None:
        obj = await self.lookup(key)
        return (obj, obj.body) if obj is not None else None

    async def body_of(self, stored: Stored) -> Body:
        """The body of a stored object (a disk entry's is read; empty if it has gone)."""
        if isinstance(stored, CachedObject):
            return stored.body
        body = await self.disk.read(stored) if self.disk is not None else None
        return body if body is not None else b""

    def store(self, obj: CachedObject) -> None:
        if self.fits_memory(obj.size):
            self.memory.put(obj)
        if self.disk is not None and obj.size <= self.disk.capacity * self.config.max_object_share:
            self._writes.spawn(self.disk.put(obj))

    async def purge(self, key: str) -> bool:
        removed = self.memory.remove(key)
        if self.disk is not None:
            removed = await self.disk.remove(key) or removed
        return removed

    async def purge_prefix(self, prefix: str) -> int:
        keys = {k for k in self.memory.cached_keys() if k.startswith(prefix)}
        if self.disk is not None:
            keys |= {k for k in self.disk.cached_keys() if k.startswith(prefix)}
        for key in keys:
            await self.purge(key)
        return len(keys)
