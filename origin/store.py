"""Title states in DATA/jobs.sqlite: the durable half of the packaging queue.

All access goes through one worker thread (SQLite connections are not shared across threads, and the
event loop must never wait on disk).
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from transcoder.chunks import Chunk

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS titles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS titles_status ON titles (status, created);
"""
# Added with chunked titles on several workers: one row per chunk of a title being encoded in chunks
# (origin/remote.py), each leased on its own like a whole title (same meaning of the lease columns);
# ``state`` is queued | leased | done.
CHUNK_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_leases (
    title_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    start REAL NOT NULL,
    duration REAL NOT NULL,
    last INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    lease_token TEXT,
    lease_expires REAL,
    lease_started INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT,
    progress REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (title_id, chunk)
);
"""
# Added after the first release: a job leased to a worker on another machine (origin/leasing.py).
# lease_token is the SHA-256 of the job's token (the token itself is never stored); lease_expires is
# wall-clock seconds, so an origin restarted meanwhile still knows the lease.
LEASE_COLUMNS = {
    "lease_token": "TEXT",
    "lease_expires": "REAL",
    "lease_started": "INTEGER NOT NULL DEFAULT 0",
    "worker": "TEXT",
    "last_failure": "TEXT",
}


class Status(StrEnum):
    QUEUED = "queued"
    PACKAGING = "packaging"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class TitleRecord:
    id: str
    name: str
    status: Status
    progress: float
    error: str | None
    created: str
    updated: str
    duration: float | None
    attempts: int
    worker: str | None = None  # the machine a packaging worker on another machine runs on (its address)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        # A failed title has no progress to show and nothing to play.
        data["progress"] = round(self.progress, 4) if self.status is not Status.FAILED else None
        data["master"] = f"/titles/{self.id}/master.m3u8" if self.status is Status.READY else None
        return data


class ChunkState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"


@dataclass(frozen=True)
class ChunkRow:
    """One chunk of a title encoded in chunks, and its lease when it has one."""

    title_id: str
    chunk: Chunk
    state: ChunkState
    token_hash: str | None = field(repr=False)
    expires: float | None
    started: bool
    worker: str | None
    attempts: int
    last_failure: str | None
    progress: float


@dataclass(frozen=True)
class LeaseRow:
    id: str
    token_hash: str = field(repr=False)
    expires: float
    started: bool
    worker: str | None
    attempts: int
    last_failure: str | None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class TitleStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _call(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.executescript(CHUNK_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(titles)")}
        for column, declaration in LEASE_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE titles ADD COLUMN {column} {declaration}")

    async def close(self) -> None:
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the title store is not open")
        return self._db

    @staticmethod
    def _record(row: sqlite3.Row | None) -> TitleRecord | None:
        if row is None:
            return None
        data = {key: value for key, value in dict(row).items() if key == "worker" or key not in LEASE_COLUMNS}
        data["status"] = Status(data["status"])
        return TitleRecord(**data)

    async def insert(self, title_id: str, name: str) -> TitleRecord:
        def insert() -> TitleRecord:
            stamp = now_iso()
            self._conn().execute(
                "INSERT INTO titles (id, name, status, created, updated) VALUES (?, ?, ?, ?, ?)",
                (title_id, name, Status.QUEUED, stamp, stamp),
            )
            record = self._get(title_id)
            assert record is not None
            return record

        result: TitleRecord = await self._call(insert)
        return result

    def _get(self, title_id: str) -> TitleRecord | None:
        return self._record(self._conn().execute("SELECT * FROM titles WHERE id = ?", (title_id,)).fetchone())

    async def get(self, title_id: str) -> TitleRecord | None:
        result: TitleRecord | None = await self._call(self._get, title_id)
        return result

    async def list(self, status: Status | None = None) -> list[TitleRecord]:
        def select() -> list[TitleRecord]:
            if status is None:
                rows = self._conn().execute("SELECT * FROM titles ORDER BY created DESC, id").fetchall()
            else:
                rows = (
                    self._conn()
                    .execute("SELECT * FROM titles WHERE status = ? ORDER BY created DESC, id", (status,))
                    .fetchall()
                )
            return [r for r in map(self._record, rows) if r is not None]

        result: list[TitleRecord] = await self._call(select)
        return result

    async def claim_next(self, exclude: set[str] | frozenset[str] = frozenset()) -> TitleRecord | None:
        """The oldest queued title not in ``exclude``, now marked packaging (one thread: no two workers
        get the same)."""

        result: TitleRecord | None = await self._call(self._claim, exclude)
        return result

    def _claim(self, exclude: set[str] | frozenset[str]) -> TitleRecord | None:
        skipped = ", ".join("?" * len(exclude))
        row = (
            self._conn()
            .execute(
                f"SELECT id FROM titles WHERE status = ? AND id NOT IN ({skipped}) "
                "ORDER BY created, id LIMIT 1",
                (Status.QUEUED, *sorted(exclude)),
            )
            .fetchone()
        )
        if row is None:
            return None
        self._conn().execute(
            "UPDATE titles SET status = ?, progress = 0, error = NULL, attempts = attempts + 1, "
            "updated = ? WHERE id = ?",
            (Status.PACKAGING, now_iso(), row["id"]),
        )
        return self._get(row["id"])

    async def lease_next(
        self, token_hash: str, expires: float, exclude: set[str] | frozenset[str] = frozenset()
    ) -> TitleRecord | None:
        """``claim_next``, with the job leased: to the holder of the token hashing to ``token_hash``, until
        ``expires`` (wall-clock seconds)."""

        def lease() -> TitleRecord | None:
            record = self._claim(exclude)
            if record is not None:
                self._conn().execute(
                    "UPDATE titles SET lease_token = ?, lease_expires = ?, lease_started = 0, worker = NULL "
                    "WHERE id = ?",
                    (token_hash, expires, record.id),
                )
            return record

        result: TitleRecord | None = await self._call(lease)
        return result

    async def leases(self) -> builtins.list[LeaseRow]:
        """Every job leased to a worker now, oldest lease first."""

        def select() -> list[LeaseRow]:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, lease_token, lease_expires, lease_started, worker, attempts, last_failure "
                    "FROM titles WHERE lease_token IS NOT NULL ORDER BY lease_expires"
                )
                .fetchall()
            )
            return [LeaseRow(r["id"], r["lease_token"], r["lease_expires"], bool(r["lease_started"]),
                             r["worker"], r["attempts"], r["last_failure"]) for r in rows]  # fmt: skip

        result: builtins.list[LeaseRow] = await self._call(select)
        return result

    async def renew_lease(
        self, title_id: str, token_hash: str, expires: float, progress: float, worker: str | None
    ) -> bool:
        """Extend the lease held with ``token_hash``; False when that lease is no longer held."""

        def renew() -> bool:
            cursor = self._conn().execute(
                "UPDATE titles SET lease_expires = ?, lease_started = 1, progress = ?, "
                "worker = COALESCE(?, worker), updated = ? WHERE id = ? AND lease_token = ?",
                (expires, progress, worker, now_iso(), title_id, token_hash),
            )
            return cursor.rowcount > 0

        result: bool = await self._call(renew)
        return result

    async def end_lease(
        self, title_id: str, token_hash: str, *, uncount: bool = False, **fields: Any
    ) -> bool:
        """End the lease held with ``token_hash`` and set ``fields`` in the same statement, so that of a
        finishing worker, an expiry and a deletion only one ends it. ``uncount``: the attempt did not
        happen (its worker never started). False when the lease was no longer held."""
        columns = self._columns(fields | {"lease_token": None, "lease_expires": None, "lease_started": 0})
        attempts = ", attempts = MAX(0, attempts - 1)" if uncount else ""

        def end() -> bool:
            cursor = self._conn().execute(
                f"UPDATE titles SET {columns}{attempts}, updated = ? WHERE id = ? AND lease_token = ?",
                (*self._values(fields), None, None, 0, now_iso(), title_id, token_hash),
            )
            return cursor.rowcount > 0

        result: bool = await self._call(end)
        return result

    @staticmethod
    def _columns(fields: dict[str, Any]) -> str:
        allowed = {"status", "progress", "error", "duration", "last_failure", "worker"} | set(LEASE_COLUMNS)
        if set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        return ", ".join(f"{name} = ?" for name in fields)

    @staticmethod
    def _values(fields: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(str(v) if isinstance(v, Status) else v for v in fields.values())

    async def update(self, title_id: str, **fields: Any) -> None:
        allowed = {"status", "progress", "error", "duration", "worker"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        columns = ", ".join(f"{name} = ?" for name in fields)

        def update() -> None:
            self._conn().execute(
                f"UPDATE titles SET {columns}, updated = ? WHERE id = ?",
                (*(str(v) if isinstance(v, Status) else v for v in fields.values()), now_iso(), title_id),
            )

        await self._call(update)

    async def last_failure(self, title_id: str) -> str | None:
        """The signature of the title's last failure (origin/leasing.py), if any."""

        def select() -> str | None:
            row = self._conn().execute("SELECT last_failure FROM titles WHERE id = ?", (title_id,)).fetchone()
            return None if row is None else row["last_failure"]

        result: str | None = await self._call(select)
        return result

    async def requeue_interrupted(self, keep_leases: bool = False) -> int:
        """After a crash or restart: titles that were packaging go back to the queue (with
        ``keep_leases``, not those leased to a worker, which may still be at work)."""

        def requeue() -> int:
            # A title in chunks is coordinated by the origin that started it: it starts over.
            self._conn().execute("DELETE FROM chunk_leases")
            kept = " AND lease_token IS NULL" if keep_leases else ""
            cursor = self._conn().execute(
                "UPDATE titles SET status = ?, progress = 0, lease_token = NULL, lease_expires = NULL, "
                f"lease_started = 0, updated = ? WHERE status = ?{kept}",
                (Status.QUEUED, now_iso(), Status.PACKAGING),
            )
            return cursor.rowcount

        result: int = await self._call(requeue)
        return result

    async def delete(self, title_id: str) -> bool:
        def delete() -> bool:
            self._conn().execute("DELETE FROM chunk_leases WHERE title_id = ?", (title_id,))
            return self._conn().execute("DELETE FROM titles WHERE id = ?", (title_id,)).rowcount > 0

        result: bool = await self._call(delete)
        return result

    async def counts(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            rows = self._conn().execute("SELECT status, COUNT(*) AS n FROM titles GROUP BY status").fetchall()
            return {str(s): 0 for s in Status} | {row["status"]: row["n"] for row in rows}

        result: dict[str, int] = await self._call(count)
        return result

    # --- chunk leases: a title encoded in chunks on several workers

    async def start_chunks(self, title_id: str, chunks: tuple[Chunk, ...]) -> None:
        """``title_id`` (claimed) is encoded in ``chunks``, every one queued."""

        def start() -> None:
            self._conn().execute("DELETE FROM chunk_leases WHERE title_id = ?", (title_id,))
            self._conn().executemany(
                "INSERT INTO chunk_leases (title_id, chunk, start, duration, last) VALUES (?, ?, ?, ?, ?)",
                [(title_id, c.index, c.start, c.duration, int(c.last)) for c in chunks],
            )

        await self._call(start)

    async def chunk_rows(self, title_id: str | None = None) -> builtins.list[ChunkRow]:
        """The chunks of ``title_id`` (of every title: None), by title and chunk."""

        def select() -> list[ChunkRow]:
            where, args = ("WHERE title_id = ?", (title_id,)) if title_id is not None else ("", ())
            rows = (
                self._conn()
                .execute(f"SELECT * FROM chunk_leases {where} ORDER BY title_id, chunk", args)
                .fetchall()
            )
            return [self._chunk_row(r) for r in rows]

        result: builtins.list[ChunkRow] = await self._call(select)
        return result

    @staticmethod
    def _chunk_row(r: sqlite3.Row) -> ChunkRow:
        chunk = Chunk(r["chunk"], r["start"], r["duration"], bool(r["last"]))
        return ChunkRow(r["title_id"], chunk, ChunkState(r["state"]), r["lease_token"], r["lease_expires"],
                        bool(r["lease_started"]), r["worker"], r["attempts"], r["last_failure"],
                        r["progress"])  # fmt: skip

    async def lease_chunk(self, title_id: str, index: int, token_hash: str, expires: float) -> bool:
        """Lease a queued chunk to the holder of ``token_hash`` until ``expires``; False when it is not
        queued (any more)."""

        def lease() -> bool:
            cursor = self._conn().execute(
                "UPDATE chunk_leases SET state = ?, lease_token = ?, lease_expires = ?, lease_started = 0, "
                "worker = NULL, attempts = attempts + 1 WHERE title_id = ? AND chunk = ? AND state = ?",
                (ChunkState.LEASED, token_hash, expires, title_id, index, ChunkState.QUEUED),
            )
            return cursor.rowcount > 0

        result: bool = await self._call(lease)
        return result

    async def renew_chunk(self, title_id: str, index: int, token_hash: str, expires: float, progress: float,
                          worker: str | None) -> bool:  # fmt: skip
        def renew() -> bool:
            cursor = self._conn().execute(
                "UPDATE chunk_leases SET lease_expires = ?, lease_started = 1, progress = ?, "
                "worker = COALESCE(?, worker) WHERE title_id = ? AND chunk = ? AND lease_token = ?",
                (expires, progress, worker, title_id, index, token_hash),
            )
            return cursor.rowcount > 0

        result: bool = await self._call(renew)
        return result

    async def end_chunk(self, title_id: str, index: int, token_hash: str, state: ChunkState, *,
                        uncount: bool = False, last_failure: str | None = None) -> bool:  # fmt: skip
        """End the chunk's lease held with ``token_hash``: ``done``, or back to ``queued`` (``uncount``:
        its worker never started; ``last_failure``: the signature of the failure that ended it). False
        when that lease was no longer held."""
        done = state is ChunkState.DONE

        def end() -> bool:
            cursor = self._conn().execute(
                "UPDATE chunk_leases SET state = ?, lease_token = NULL, lease_expires = NULL, "
                f"lease_started = 0, attempts = attempts - ?, progress = {'1' if done else 'progress'}, "
                "last_failure = COALESCE(?, last_failure) "
                "WHERE title_id = ? AND chunk = ? AND lease_token = ?",
                (state, int(uncount), last_failure, title_id, index, token_hash),
            )
            return cursor.rowcount > 0

        result: bool = await self._call(end)
        return result

    async def end_chunked(self, title_id: str, **fields: Any) -> None:
        """A title in chunks is over (published, failed, back to the queue, deleted): its chunks go, and
        ``fields`` of the title are set, in one transaction."""
        columns = self._columns(fields)

        def end() -> None:
            with self._conn():
                self._conn().execute("BEGIN")
                self._conn().execute("DELETE FROM chunk_leases WHERE title_id = ?", (title_id,))
                if fields:
                    self._conn().execute(
                        f"UPDATE titles SET {columns}, updated = ? WHERE id = ?",
                        (*self._values(fields), now_iso(), title_id),
                    )

        await self._call(end)
