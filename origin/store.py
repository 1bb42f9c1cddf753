"""Title states in DATA/jobs.sqlite: the durable half of the packaging queue.

All access goes through one worker thread (SQLite connections are not shared across threads, and the
event loop must never wait on disk).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        # A failed title has no progress to show and nothing to play.
        data["progress"] = round(self.progress, 4) if self.status is not Status.FAILED else None
        data["master"] = f"/titles/{self.id}/master.m3u8" if self.status is Status.READY else None
        return data


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
        data = dict(row)
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

        def claim() -> TitleRecord | None:
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

        result: TitleRecord | None = await self._call(claim)
        return result

    async def update(self, title_id: str, **fields: Any) -> None:
        allowed = {"status", "progress", "error", "duration"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        columns = ", ".join(f"{name} = ?" for name in fields)

        def update() -> None:
            self._conn().execute(
                f"UPDATE titles SET {columns}, updated = ? WHERE id = ?",
                (*(str(v) if isinstance(v, Status) else v for v in fields.values()), now_iso(), title_id),
            )

        await self._call(update)

    async def requeue_interrupted(self) -> int:
        """After a crash or restart: titles that were packaging go back to the queue."""

        def requeue() -> int:
            cursor = self._conn().execute(
                "UPDATE titles SET status = ?, progress = 0, updated = ? WHERE status = ?",
                (Status.QUEUED, now_iso(), Status.PACKAGING),
            )
            return cursor.rowcount

        result: int = await self._call(requeue)
        return result

    async def delete(self, title_id: str) -> bool:
        def delete() -> bool:
            return self._conn().execute("DELETE FROM titles WHERE id = ?", (title_id,)).rowcount > 0

        result: bool = await self._call(delete)
        return result

    async def counts(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            rows = self._conn().execute("SELECT status, COUNT(*) AS n FROM titles GROUP BY status").fetchall()
            return {str(s): 0 for s in Status} | {row["status"]: row["n"] for row in rows}

        result: dict[str, int] = await self._call(count)
        return result
