"""Joining a Ray cluster as a driver, bounded in time: the one way surge's Ray users (the fleet's edges,
the packaging workers, the load tester's generators) connect. It imports ray (the optional extra
``surge[ray]``): import this module only once Ray is asked for.

Ray's own settings apply as usual (``RAY_AUTH_MODE`` and its token, ``RAY_ADDRESS``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import ray
from ray._private import ray_constants

from media.errors import SurgeError
from service.logs import log

logger = logging.getLogger("surge.ray")
CALL_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 60.0


def _not_sigterm_warning(record: logging.LogRecord) -> bool:
    return "SIGTERM handler is not set" not in record.getMessage()


def _quiet_signals() -> None:
    """The server's own SIGTERM/SIGINT handling stays in charge: ray.init runs off the main thread so that
    Ray does not replace it (Ray warns that it did not, which is the point), and Ray's failure signal
    handler, which would print a stack trace on every graceful stop, is not installed. Ray reads its
    ``RAY_DISABLE_FAILURE_SIGNAL_HANDLER`` once, when first imported, so the constant is set instead."""
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    logging.getLogger("ray._private.worker").addFilter(_not_sigterm_warning)  # added once, however often


def _init_ray(options: dict[str, Any], joined: asyncio.Future[None]) -> None:
    loop = joined.get_loop()
    try:
        ray.init(**options)
    except Exception as err:
        loop.call_soon_threadsafe(_settle, joined, err)
    else:
        loop.call_soon_threadsafe(_settle, joined, None)


def _settle(joined: asyncio.Future[None], err: Exception | None) -> None:
    if joined.done():
        return
    if err is None:
        joined.set_result(None)
    else:
        joined.set_exception(err)


def local_address_towards(address: str) -> str | None:
    """This machine's address on the route to ``host:port`` (a UDP connect sends nothing)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host.strip("[]"), int(port)))
            return str(probe.getsockname()[0])
    except OSError:
        return None


async def join_cluster(address: str | None, namespace: str) -> None:
    """Join the cluster at ``address`` (the head's host:port; None: the cluster this machine belongs to)
    as a driver, once per process. Blocking in ray, so off the event loop, in a daemon thread: a
    ``ray.init`` that never returns must not hold up exit. Raises ``SurgeError`` saying why not."""
    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "address": address or "auto",
        "namespace": namespace,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    if address and (own := local_address_towards(address)):
        options["_node_ip_address"] = own
    where = address or "this machine"
    if address:
        host, _, port = address.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)),
                                               CALL_TIMEOUT_S)  # fmt: skip
            writer.close()
        except (OSError, TimeoutError, ValueError) as err:
            raise SurgeError(f"cannot reach the Ray head at {where}: {err or 'timed out'}") from None
    joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _quiet_signals()
    threading.Thread(target=_init_ray, args=(options, joined), daemon=True, name="ray init").start()
    try:
        await asyncio.wait_for(joined, JOIN_TIMEOUT_S)
    except TimeoutError:
        raise SurgeError(
            f"cannot join the Ray cluster at {where}: no answer in {JOIN_TIMEOUT_S:.0f} s"
        ) from None
    except Exception as err:  # ray raises ConnectionError, RuntimeError, ValueError... for the same cause
        raise SurgeError(f"cannot join the Ray cluster at {where}: {err}".splitlines()[0]) from None
    log(logger, "joined the ray cluster", address=address or "auto", namespace=namespace)
