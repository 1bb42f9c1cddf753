"""A long wire between two TAP devices: each frame comes out of the other end ``delay`` seconds after it went
in, both ways, so a host's round trip is twice that. What ``tc ... netem delay`` does, for kernels built
without sch_netem.

Run by ``tests.hosts.Lab`` in the root namespace: ``python tests/wire.py OUTER INNER DELAY``. It makes the
two devices, prints ``ready``, and carries frames until it is killed or its standard input closes (its
owner died), and the devices go with it. Frames leave in the order they came in; a frame the far end will
not take is lost, as on a wire. No import from the project: it runs as a plain script."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable

TUNSETIFF = 0x400454CA  # linux/if_tun.h
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
FRAME_MAX = 65536


def open_tap(name: str) -> int:
    descriptor = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(descriptor, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return descriptor


def send(descriptor: int, frame: bytes) -> None:
    with contextlib.suppress(OSError):  # the device is down or gone: the frame is lost
        os.write(descriptor, frame)


class Direction:
    """One way along the wire: frames in flight, oldest first, and one timer for the oldest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: int, target: int, delay: float,
                 cut: Callable[[], None]) -> None:  # fmt: skip
        self.loop, self.source, self.target, self.delay, self.cut = loop, source, target, delay, cut
        self.in_flight: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def take(self) -> None:
        while True:
            try:
                frame = os.read(self.source, FRAME_MAX)
            except BlockingIOError:
                break
            except OSError:  # the device went away with its namespace
                self.cut()
                return
            self.in_flight.append((self.loop.time() + self.delay, frame))
        if self.in_flight and self.timer is None:
            self.timer = self.loop.call_at(self.in_flight[0][0], self.deliver)

    def deliver(self) -> None:
        # One timer per direction, not one per frame: the loop's timers fire in no set order when they
        # are due at the same moment, and a wire does not reorder.
        self.timer = None
        now = self.loop.time()
        while self.in_flight and self.in_flight[0][0] <= now:
            send(self.target, self.in_flight.popleft()[1])
        if self.in_flight:
            self.timer = self.loop.call_at(self.in_flight[0][0], self.deliver)


async def carry(outer: str, inner: str, delay: float) -> None:
    loop = asyncio.get_running_loop()
    ends = open_tap(outer), open_tap(inner)
    done: asyncio.Future[None] = loop.create_future()

    def end() -> None:
        if not done.done():
            done.set_result(None)

    def owner_wrote() -> None:
        if not os.read(owner, 4096):  # EOF: the owner closed the pipe, or died
            end()

    for source, target in ((ends[0], ends[1]), (ends[1], ends[0])):
        loop.add_reader(source, Direction(loop, source, target, delay, end).take)
    owner = sys.stdin.fileno()
    loop.add_reader(owner, owner_wrote)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, end)
    print("ready", flush=True)
    await done
    loop.remove_reader(owner)
    for descriptor in ends:
        loop.remove_reader(descriptor)
        os.close(descriptor)


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: wire.py OUTER INNER DELAY_SECONDS", file=sys.stderr)
        return 2
    outer, inner, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    asyncio.run(carry(outer, inner, delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
