"""Internal routes for packaging workers on other machines (origin/remote.py; the worker side is
transcoder/worker.py). Thin: the queue decides.

Every route needs the job's lease token, ``Authorization: Bearer <token>``: 401 without one, 403 for a
wrong one or one whose lease ended or ran out. A file path is checked before anything touches the disk
(400). ``<id>`` is the title id.

- ``GET  /internal/jobs/<id>/source``: the source file.
- ``PUT  /internal/jobs/<id>/files/<path>``: one output file (``360p/seg_00000.m4s``), raw body, into the
  lease's staging directory; 201 ``{"path", "size"}``; 413 over the size cap.
- ``POST /internal/jobs/<id>/renew`` ``{"progress": 0.42, "worker": "198.51.100.7"}``: 200
  ``{"expires_in": seconds}``.
- ``POST /internal/jobs/<id>/done``: check, complete and publish; 200 ``{"status": "ready"}`` (a chunk's
  token: ``{"status": "done"}``, the chunk kept for the title), or 422 ``{"status": "queued" | "failed",
  "error"}`` when the output was refused.

A token is that of a whole title's lease or of one chunk's (a title encoded in chunks on several
workers): the same routes serve both, and a chunk's files go to its own directory whatever path is sent.
- ``POST /internal/jobs/<id>/failed`` ``{"type": "TranscodeFailed", "message": "...", "exit_code": 1}``:
  200 ``{"status": "queued" | "failed", "error"}``.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from aiohttp import web

from media.errors import InvalidInput
from media.ids import validate_title_id
from origin.remote import INTERNAL_PREFIX, UPLOAD_CHUNK, RemoteQueue
from service.auth import bearer_token

REMOTE = web.AppKey("remote", RemoteQueue)
WORKER_TOKEN = "job token"


def _job(request: web.Request) -> tuple[RemoteQueue, str, str]:
    token = bearer_token(request, WORKER_TOKEN)
    return request.app[REMOTE], validate_title_id(request.match_info["title_id"]), token


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise InvalidInput("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


async def source(request: web.Request) -> web.StreamResponse:
    queue, job_id, token = _job(request)
    await queue.authorize(job_id, token)
    return web.FileResponse(queue.source(job_id), headers={"Cache-Control": "no-store"})


async def put_file(request: web.Request) -> web.Response:
    queue, job_id, token = _job(request)
    path = request.match_info["path"]
    size = await queue.receive(job_id, token, path, request.content_length,
                               request.content.iter_chunked(UPLOAD_CHUNK))  # fmt: skip
    return web.json_response({"path": path, "size": size}, status=201)


async def renew(request: web.Request) -> web.Response:
    queue, job_id, token = _job(request)
    body = await _json_object(request)
    progress, worker = body.get("progress", 0.0), body.get("worker")
    if isinstance(progress, bool) or not isinstance(progress, int | float) or not math.isfinite(progress):
        raise InvalidInput("progress must be a number from 0 to 1")
    if worker is not None and (not isinstance(worker, str) or len(worker) > 255):
        raise InvalidInput("worker must be the worker's address")
    expires_in = await queue.renew(job_id, token, min(1.0, max(0.0, float(progress))), worker)
    return web.json_response({"expires_in": round(expires_in, 3)})


async def done(request: web.Request) -> web.Response:
    queue, job_id, token = _job(request)
    verdict = await queue.complete(job_id, token)
    return web.json_response(asdict(verdict), status=200 if verdict.error is None else 422)


async def failed(request: web.Request) -> web.Response:
    queue, job_id, token = _job(request)
    verdict = await queue.failed(job_id, token, await _json_object(request))
    return web.json_response(asdict(verdict))


def add_routes(app: web.Application) -> None:
    jobs = INTERNAL_PREFIX + "/{title_id}"
    app.router.add_get(f"{jobs}/source", source)
    app.router.add_put(jobs + "/files/{path:.+}", put_file)
    app.router.add_post(f"{jobs}/renew", renew)
    app.router.add_post(f"{jobs}/done", done)
    app.router.add_post(f"{jobs}/failed", failed)
