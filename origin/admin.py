"""Admin API: upload (raw body or multipart, streamed to disk), status, delete. Bearer token required."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiofiles
from aiohttp import BodyPartReader, web

from media.errors import (
    AlreadyExists,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMedia,
)
from media.ids import new_title_id, validate_title_id
from media.layout import is_safe_component
from media.probe import probe_source
from media.signing import Grant, make_token, signed_path
from origin.delivery import PUBLISHED
from origin.fleet import FLEET_LINK
from origin.jobs import add_title, disk_free, remove_title_files
from origin.keys import CONFIG, LIBRARY, QUEUE, STORE, TOKEN, TOKENS
from origin.store import TitleRecord
from service.auth import check_bearer
from transcoder.package import out_of_space

CHUNK = 1024 * 1024
DISK_CHECK_EVERY = 64 * CHUNK
MAX_NAME = 200
RAW_TYPES = ("application/octet-stream", "application/mp4", "application/x-matroska")
DEFAULT_TOKEN_TTL = 3600
MAX_TOKEN_TTL = 30 * 24 * 3600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/admin/titles"):
        check_bearer(request, request.app[TOKEN])
    return await handler(request)


def clean_name(text: str | None, fallback: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]+", " ", text or "").strip()[:MAX_NAME]
    return name or fallback


async def _stream_to_file(part: Path, chunks: AsyncIterator[bytes], request: web.Request) -> int:
    config, library = request.app[CONFIG], request.app[LIBRARY]
    written = next_disk_check = 0
    try:
        async with aiofiles.open(part, "wb") as handle:
            async for chunk in chunks:
                written += len(chunk)
                if written > config.max_upload:
                    raise PayloadTooLarge(f"the upload is larger than the {config.max_upload} byte limit")
                if written >= next_disk_check:
                    next_disk_check = written + DISK_CHECK_EVERY
                    if await asyncio.to_thread(disk_free, library.uploads_dir) < config.min_free_disk:
                        raise InsufficientStorage("the origin's disk is too full to take this upload")
                await handle.write(chunk)
    except OSError as err:
        # A body of unknown length (chunked) can fill the disk between two checks.
        if out_of_space(err, None):
            raise InsufficientStorage(
                f"the origin's disk filled up during this upload ({written} bytes)"
            ) from err
        raise
    return written


async def _field_chunks(field: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await field.read_chunk(CHUNK):
        yield chunk


async def _receive(request: web.Request, part: Path) -> tuple[int, str | None]:
    """Stream the upload to ``part``; returns (bytes, name from the form or file name)."""
    content_type = request.content_type
    if content_type == "multipart/form-data":
        reader = await request.multipart()
        size, name, filename = -1, None, None
        while (field := await reader.next()) is not None:
            if not isinstance(field, BodyPartReader):
                raise InvalidInput("nested multipart bodies are not supported")
            if field.name == "file" and size < 0:
                filename = field.filename
                size = await _stream_to_file(part, _field_chunks(field), request)
            elif field.name == "name":
                name = (await field.read_chunk(4 * MAX_NAME)).decode(errors="replace")
                await field.release()
            else:
                await field.release()
        if size < 0:
            raise InvalidInput("the multipart upload has no 'file' field")
        # Some clients (aiohttp's FormData among them) percent-encode the file name.
        return size, name or (Path(unquote(filename)).stem if filename else None)
    if content_type in RAW_TYPES or content_type.startswith("video/"):
        return await _stream_to_file(part, request.content.iter_chunked(CHUNK), request), None
    raise UnsupportedMedia(
        f"unsupported Content-Type {content_type!r}: send the video as the raw body "
        "(application/octet-stream or video/*) or as multipart/form-data with a 'file' field"
    )


def _with_live_progress(request: web.Request, record: TitleRecord) -> dict[str, object]:
    data = record.to_json()
    live = request.app[QUEUE].live_progress(record.id)
    if live is not None:
        data["progress"] = round(live, 4)
    return data


async def upload(request: web.Request) -> web.Response:
    config, library = request.app[CONFIG], request.app[LIBRARY]
    declared = request.content_length
    if declared is not None and declared > config.max_upload:
        raise PayloadTooLarge(
            f"the upload ({declared} bytes) is larger than the {config.max_upload} byte limit"
        )
    free = await asyncio.to_thread(disk_free, library.uploads_dir)
    if free < (declared or 0) + config.min_free_disk:
        raise InsufficientStorage("the origin's disk is too full to take this upload")
    part = library.uploads_dir / f"{uuid.uuid4().hex}.part"
    try:
        size, form_name = await _receive(request, part)
        if size == 0:
            raise InvalidInput("the upload is empty")
        name = clean_name(request.query.get("name") or form_name, "untitled")
        facts = await asyncio.to_thread(probe_source, part, name)
        title_id = new_title_id(name)
        record = await add_title(request.app[STORE], library, part, title_id, name)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(part.unlink, missing_ok=True))
        raise
    request.app[QUEUE].wake()
    body = record.to_json() | {
        "size": size,
        "source": {
            "width": facts.display_width,
            "height": facts.display_height,
            "duration": round(facts.duration, 3),
        },
    }
    return web.json_response(body, status=202, headers={"Location": f"/admin/titles/{title_id}"})


async def list_titles(request: web.Request) -> web.Response:
    records = await request.app[STORE].list()
    return web.json_response({"titles": [_with_live_progress(request, r) for r in records]})


async def get_title(request: web.Request) -> web.Response:
    title_id = validate_title_id(request.match_info["title_id"])
    record = await request.app[STORE].get(title_id)
    if record is None:
        raise NotFound(f"no title {title_id!r}")
    return web.json_response(_with_live_progress(request, record))


async def delete_title(request: web.Request) -> web.Response:
    title_id = validate_title_id(request.match_info["title_id"])
    store, queue = request.app[STORE], request.app[QUEUE]
    if await store.get(title_id) is None:
        raise NotFound(f"no title {title_id!r}")
    await queue.cancel(title_id)
    request.app[PUBLISHED].forget(title_id)
    await asyncio.to_thread(remove_title_files, request.app[LIBRARY], title_id)
    await store.delete(title_id)
    link = request.app[FLEET_LINK]
    if link.url is None:
        return web.Response(status=204)
    purge = await link.purge_title(title_id, request.app[TOKEN])
    return web.json_response({"id": title_id, "deleted": True, "fleet_purge": purge})


def _token_request(body: object) -> tuple[int, str | None, str | None, str | None]:
    """(ttl, rendition, client, base) from the JSON body of a token request, validated."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = set(body) - {"ttl", "rendition", "client", "base"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))} (ttl, rendition, client, base)")
    ttl = body.get("ttl", DEFAULT_TOKEN_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise InvalidInput(f"ttl must be a whole number of seconds within 1-{MAX_TOKEN_TTL}")
    rendition, client, base = body.get("rendition"), body.get("client"), body.get("base")
    if rendition is not None and (not isinstance(rendition, str) or not is_safe_component(rendition)):
        raise InvalidInput("rendition must be a rendition name such as 360p")
    if client is not None:
        try:
            client = str(ipaddress.ip_address(client))
        except ValueError:
            raise InvalidInput("client must be an IPv4 or IPv6 address") from None
    if base is not None:
        parts = urlsplit(base) if isinstance(base, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path.strip("/")
        ):
            raise InvalidInput("base must be a server URL such as https://edge.example.com:8443")
    return ttl, rendition, client, base


async def make_playback_url(request: web.Request) -> web.Response:
    """``POST /admin/titles/<id>/tokens``: a signed URL of the title's master (or of one rendition's
    playlist), optionally bound to a client address; 201 with the URL, the token and its expiry."""
    title_id = validate_title_id(request.match_info["title_id"])
    keys = request.app[TOKENS].keys
    if keys is None:
        raise AlreadyExists("signed URLs are off: start the origin with --signing-key or --signing-key-file")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise InvalidInput('the body must be JSON, e.g. {"ttl": 3600, "client": "198.51.100.7"}') from None
    ttl, rendition, client, base = _token_request(body)
    if await request.app[STORE].get(title_id) is None:
        raise NotFound(f"no title {title_id!r}")
    prefix = f"/titles/{title_id}/" + (f"{rendition}/" if rendition else "")
    expires = int(time.time()) + ttl
    token = make_token(keys, Grant(prefix, expires, client))
    path = signed_path(token, prefix + ("index.m3u8" if rendition else "master.m3u8"))
    server = base or f"{request.scheme}://{request.host}"
    return web.json_response(
        {
            "url": server + path,
            "path": path,
            "token": token,
            "prefix": prefix,
            "expires": expires,
            "client": client,
        },
        status=201,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/titles/{title_id}/tokens", make_playback_url)
    app.router.add_post("/admin/titles", upload)
    app.router.add_get("/admin/titles", list_titles)
    app.router.add_get("/admin/titles/{title_id}", get_title)
    app.router.add_delete("/admin/titles/{title_id}", delete_title)
