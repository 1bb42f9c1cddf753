"""The admin client behind ``surge upload``: streams a file to an origin and follows its packaging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp

from media.errors import SurgeError

CHUNK = 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # the origin probes the whole upload before it answers
POLL_INTERVAL_S = 0.5


class ClientError(SurgeError):
    status = 502


def _timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await response.json(content_type=None)
    except (aiohttp.ContentTypeError, ValueError):
        text = (await response.text(errors="replace"))[:200]
        raise ClientError(
            f"the server answered {response.status} with something that is not JSON: {text!r}"
        ) from None
    if not isinstance(data, dict):
        raise ClientError(f"the server answered {response.status} with unexpected JSON")
    return data


async def upload_file(
    server: str, token: str, path: Path, name: str | None, on_bytes: Callable[[int], object] | None = None
) -> dict[str, Any]:
    size = (await asyncio.to_thread(path.stat)).st_size

    async def body() -> AsyncIterator[bytes]:
        async with aiofiles.open(path, "rb") as handle:
            while chunk := await handle.read(CHUNK):
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
    }
    params = {"name": name or path.stem}
    try:
        async with (
            aiohttp.ClientSession(timeout=_timeout()) as session,
            session.post(
                f"{server.rstrip('/')}/admin/titles", data=body(), headers=headers, params=params
            ) as response,
        ):
            data = await _json(response)
            if response.status != 202:
                raise ClientError(f"upload refused ({response.status}): {data.get('error', data)}")
            return data
    except aiohttp.ClientError as err:
        raise ClientError(f"cannot upload to {server}: {err}") from None
    except TimeoutError:
        raise ClientError(f"{server} did not answer in time") from None


async def title_status(
    session: aiohttp.ClientSession, server: str, token: str, title_id: str
) -> dict[str, Any]:
    url = f"{server.rstrip('/')}/admin/titles/{title_id}"
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        data = await _json(response)
        if response.status != 200:
            raise ClientError(
                f"status of {title_id} unavailable ({response.status}): {data.get('error', data)}"
            )
        return data


async def wait_until_done(
    server: str, token: str, title_id: str, on_progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Poll until the title is ready or failed; returns its last status."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while True:
                status = await title_status(session, server, token, title_id)
                if on_progress is not None:
                    on_progress(float(status.get("progress") or 0.0))
                if status["status"] in ("ready", "failed"):
                    return status
                await asyncio.sleep(POLL_INTERVAL_S)
    except aiohttp.ClientError as err:
        raise ClientError(f"lost contact with {server}: {err}") from None
    except TimeoutError:
        raise ClientError(f"{server} did not answer in time") from None
