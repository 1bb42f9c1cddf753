"""Leases in the title store (DATA/jobs.sqlite): durable, ended once, and added to an older store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from origin.store import SCHEMA, Status, TitleStore

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
