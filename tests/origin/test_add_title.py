"""The one way a title enters the origin (uploads and ``surge demo``): its source moved into the library,
the title queued in a real store."""

from __future__ import annotations

from pathlib import Path

from media.layout import Library
from origin.jobs import add_title
from origin.store import Status, TitleStore


async def test_a_source_is_moved_into_the_library_and_queued(tmp_path: Path) -> None:
    library = Library(tmp_path / "data")
    library.ensure_dirs()
    part = library.uploads_dir / "0123.part"
    part.write_bytes(b"not really a video")
    store = TitleStore(library.jobs_db_path)
    await store.open()
    try:
        record = await add_title(store, library, part, "show-abc123", "Show")
        assert (record.id, record.name, record.status) == ("show-abc123", "Show", Status.QUEUED)
        assert await store.get("show-abc123") == record
        assert not part.exists()
        assert library.source_path("show-abc123").read_bytes() == b"not really a video"
    finally:
        await store.close()


async def test_a_source_already_in_place_stays_there(tmp_path: Path) -> None:
    library = Library(tmp_path / "data")
    library.ensure_dirs()
    source = library.source_path("demo")
    source.parent.mkdir(parents=True)
    source.write_bytes(b"sample")
    store = TitleStore(library.jobs_db_path)
    await store.open()
    try:
        record = await add_title(store, library, source, "demo", "surge demo")
        assert record.status is Status.QUEUED and source.read_bytes() == b"sample"
        assert [r.id for r in await store.list(Status.QUEUED)] == ["demo"]
    finally:
        await store.close()
