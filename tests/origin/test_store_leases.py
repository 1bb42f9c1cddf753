"""Leases in the title store (DATA/jobs.sqlite): durable, ended once, and added to an older store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from origin.store import SCHEMA, ChunkState, Status, TitleStore
from transcoder.chunks import Chunk

T0 = 1_800_000_000.0


async def test_a_store_made_before_leases_gains_them_and_keeps_its_titles(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA)
        old.execute("INSERT INTO titles (id, name, status, created, updated) VALUES "
                    "('old-title', 'Old', 'queued', '2026-01-01', '2026-01-01')")  # fmt: skip
    store = TitleStore(path)
    await store.open()
    try:
        [record] = await store.list()
        assert (record.id, record.status, record.worker) == ("old-title", Status.QUEUED, None)
        leased = await store.lease_next("hash-a", T0 + 30)
        assert leased is not None and (leased.status, leased.attempts) == (Status.PACKAGING, 1)
        [lease] = await store.leases()
        assert (lease.id, lease.expires, lease.started, lease.attempts) == ("old-title", T0 + 30, False, 1)
        assert "hash-a" not in repr(lease)
    finally:
        await store.close()


async def test_a_lease_survives_a_reopened_store_and_ends_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = TitleStore(path)
    await store.open()
    await store.insert("a-title", "A")
    await store.lease_next("hash-a", T0 + 30)
    assert await store.renew_lease("a-title", "hash-a", T0 + 60, 0.5, "198.51.100.7")
    assert not await store.renew_lease("a-title", "hash-b", T0 + 90, 0.9, "198.51.100.8")  # not its token
    await store.close()

    store = TitleStore(path)  # an origin restarted
    await store.open()
    try:
        assert await store.requeue_interrupted(keep_leases=True) == 0
        [lease] = await store.leases()
        assert (lease.expires, lease.started, lease.worker) == (T0 + 60, True, "198.51.100.7")
        record = await store.get("a-title")
        assert record is not None and (record.status, record.progress) == (Status.PACKAGING, 0.5)
        # A finishing worker and an expiry race: only one ends the lease.
        assert await store.end_lease("a-title", "hash-a", status=Status.READY, progress=1.0)
        assert not await store.end_lease("a-title", "hash-a", status=Status.QUEUED, progress=0.0)
        assert await store.leases() == []
        record = await store.get("a-title")
        assert record is not None and record.status is Status.READY
    finally:
        await store.close()


async def test_a_lease_never_started_is_not_counted_and_local_packaging_clears_leases(tmp_path: Path) -> None:
    store = TitleStore(tmp_path / "jobs.sqlite")
    await store.open()
    try:
        await store.insert("a-title", "A")
        await store.lease_next("hash-a", T0 + 30)
        assert await store.end_lease("a-title", "hash-a", uncount=True, status=Status.QUEUED)
        record = await store.get("a-title")
        assert record is not None and (record.status, record.attempts) == (Status.QUEUED, 0)
        await store.lease_next("hash-b", T0 + 30)
        assert await store.requeue_interrupted() == 1  # --packagers local after a remote run
        assert await store.leases() == []
    finally:
        await store.close()


async def test_chunk_leases_are_leased_renewed_and_ended_once_and_go_with_their_title(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as old:  # a store made before chunk leases
        old.executescript(SCHEMA)
    store = TitleStore(path)
    await store.open()
    try:
        await store.insert("a-title", "A")
        assert await store.claim_next() is not None
        chunks = (Chunk(0, 0.0, 6.0, False), Chunk(1, 6.0, 5.5, True))
        await store.start_chunks("a-title", chunks)
        assert [(r.chunk, r.state, r.attempts) for r in await store.chunk_rows()] == [
            (chunks[0], ChunkState.QUEUED, 0), (chunks[1], ChunkState.QUEUED, 0)]  # fmt: skip
        assert await store.lease_chunk("a-title", 0, "hash-a", T0 + 30)
        assert not await store.lease_chunk("a-title", 0, "hash-b", T0 + 30)  # leased already
        assert await store.renew_chunk("a-title", 0, "hash-a", T0 + 60, 0.5, "198.51.100.7")
        assert not await store.renew_chunk("a-title", 0, "hash-b", T0 + 60, 0.5, None)  # not its token
        [row, _] = await store.chunk_rows("a-title")
        assert (row.state, row.expires, row.started, row.worker, row.progress, row.attempts) == (
            ChunkState.LEASED, T0 + 60, True, "198.51.100.7", 0.5, 1)  # fmt: skip
        assert "hash-a" not in repr(row)
        # Lost: back to the queue with the failure's signature; a lease never started is not counted.
        assert await store.end_chunk("a-title", 0, "hash-a", ChunkState.QUEUED, last_failure="worker lost:")
        assert not await store.end_chunk("a-title", 0, "hash-a", ChunkState.DONE)  # ended once
        assert await store.lease_chunk("a-title", 0, "hash-c", T0 + 30)
        assert await store.end_chunk("a-title", 0, "hash-c", ChunkState.QUEUED, uncount=True)
        [row, _] = await store.chunk_rows("a-title")
        assert (row.state, row.attempts, row.last_failure, row.token_hash) == (
            ChunkState.QUEUED, 1, "worker lost:", None)  # fmt: skip
        assert await store.lease_chunk("a-title", 0, "hash-d", T0 + 30)
        assert await store.end_chunk("a-title", 0, "hash-d", ChunkState.DONE)
        assert next((r.state, r.progress) for r in await store.chunk_rows()) == (ChunkState.DONE, 1.0)
        # The title ends (here: failed); its chunks go in the same transaction.
        await store.end_chunked("a-title", status=Status.FAILED, error="chunk 1: bad", last_failure="x")
        assert await store.chunk_rows() == []
        record = await store.get("a-title")
        assert record is not None and (record.status, record.error) == (Status.FAILED, "chunk 1: bad")
        assert await store.last_failure("a-title") == "x"
        # A restarted origin starts a title in chunks over: its chunks are dropped, the title requeued.
        await store.insert("b-title", "B")
        assert await store.claim_next() is not None
        await store.start_chunks("b-title", chunks)
        assert await store.requeue_interrupted(keep_leases=True) == 1
        assert await store.chunk_rows() == []
        await store.start_chunks("b-title", chunks)
        assert await store.delete("b-title") and await store.chunk_rows() == []
    finally:
        await store.close()
