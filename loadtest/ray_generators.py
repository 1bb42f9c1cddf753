"""``surge loadtest --ray-address``: the players spread over the machines of a Ray cluster that offer
``surge_loadgen`` units (``ray start ... --resources '{"surge_loadgen": 1}'``). The only loadtest module
that imports ray.

- One actor per unit (or per ``--generators``), spread over machines, each a share of the arrivals
  (``LoadTestConfig.share``: exact counts, at their global times, so the ramp stays global). Every actor
  is placed and ready before any starts, so the shares start together.
- Each actor runs the ordinary driver (``loadtest.driver.Run``) on uvloop in a thread of its own and keeps
  the rows of its time series; this side fetches them as they come (a call that waits up to a second for
  a new row), merges each second once every generator still running has sent it, and shows it as the
  progress line. At the end each actor sends its ``Tally``; the report merges them exactly
  (``loadtest.tally``).
- A generator lost mid-run (its machine died, it stopped answering) is reported as lost, with the seconds
  it had sent; the run goes on with the others. Every call is bounded.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError

from loadtest.config import LoadTestConfig
from loadtest.driver import Progress, Run
from loadtest.hosts import HostGuard
from loadtest.metrics import Second, merge_seconds
from loadtest.report import build_report
from loadtest.tally import GeneratorRun, Tally
from media.errors import SurgeError
from service.loop import run as run_on_uvloop
from service.ray_cluster import CALL_TIMEOUT_S, join_cluster

GENERATOR_RESOURCE = "surge_loadgen"
DEFAULT_NAMESPACE = "surge-loadtest"
READY_TIMEOUT_S = 60.0  # for every generator to be placed on a machine and answer
FETCH_WAIT_S = 1.0  # how long one fetch of rows waits for a new one
END_MARGIN_S = 30.0  # after the run's duration and grace, for a generator to send its totals


@dataclass(frozen=True)
class Streamed:
    """What a generator has to say since the last fetch."""

    rows: list[Second]
    errors: int  # failed requests so far
    done: bool  # its run is over: no more rows


class GeneratorActor:
    """Runs in a Ray worker on a machine offering a ``surge_loadgen`` unit: one share of the players."""

    def __init__(self, config: LoadTestConfig) -> None:
        self.config = config
        self.node: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.rows: list[Second] = []
        self.errors = 0
        self.outcome: concurrent.futures.Future[Tally] = concurrent.futures.Future()
        self._news = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the generator's, in its own thread
        self._run: Run | None = None
        self._started = False
        self._stopping = False

    async def where(self) -> str:
        return self.node

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        actor_loop = asyncio.get_running_loop()

        def on_second(row: Second, errors: int) -> None:
            self.rows.append(row)
            self.errors = errors
            actor_loop.call_soon_threadsafe(self._wake)

        def generate() -> None:
            try:
                self.outcome.set_result(run_on_uvloop(self._generate(on_second)))
            except BaseException as err:  # sent to the coordinator, which reports it
                self.outcome.set_exception(err)
            actor_loop.call_soon_threadsafe(self._wake)

        threading.Thread(target=generate, daemon=True, name="surge loadgen").start()

    async def _generate(self, on_second: Progress) -> Tally:
        self._loop = asyncio.get_running_loop()
        self._run = Run(self.config, on_second)
        if self._stopping:  # asked before the run existed (``stop`` sets the flag, then looks for it)
            self._run.interrupt()
        return await self._run.run()

    def _wake(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def seconds(self, after: int, wait: float) -> Streamed:
        """The rows from index ``after`` on, waiting up to ``wait`` seconds for one."""
        if len(self.rows) <= after and not self.outcome.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), wait)
        done = self.outcome.done()  # before the rows: the last row is added before the run ends
        return Streamed(self.rows[after:], self.errors, done)

    async def stop(self) -> None:
        """End the run now (the coordinator was interrupted): the totals cover that much."""
        self._stopping = True
        if self._loop is not None and self._run is not None:
            self._loop.call_soon_threadsafe(self._run.interrupt)

    async def result(self) -> Tally:
        return await asyncio.wrap_future(self.outcome)


@dataclass
class _Generator:
    actor: Any
    run: GeneratorRun
    errors: int = 0
    done: bool = False
    keys: list[int] = field(default_factory=list)  # of the rows streamed, in order
    by_key: dict[int, Second] = field(default_factory=dict)

    def add(self, rows: Sequence[Second]) -> None:
        self.run.streamed.extend(rows)
        for row in rows:
            self.keys.append(row.key)
            self.by_key[row.key] = row

    def sent(self, emitted: int) -> Sent:
        """The keys it sent after ``emitted``, and whether more may come."""
        return self.keys[bisect.bisect_right(self.keys, emitted) :], not self.done and self.run.lost is None


Sent = tuple[list[int], bool]  # the seconds (keys) a generator has sent, and whether more may come


def ready_keys(sent: Sequence[Sent], emitted: int) -> list[int]:
    """The seconds after ``emitted`` that can be shown: every generator that may still send rows has
    sent that second or a later one (its rows come in order); the others have sent all they will."""
    running = [keys[-1] if keys else 0 for keys, more in sent if more]
    upto = min(running) if running else max((k for keys, _ in sent for k in keys), default=0)
    return sorted({k for keys, _ in sent for k in keys if emitted < k <= upto})


def plan_generators(units: float, wanted: int | None) -> int:
    """How many generators to run: every ``surge_loadgen`` unit of the cluster, or ``wanted`` of them."""
    available = int(units)
    if available < 1:
        raise SurgeError(
            f"no machine of the Ray cluster offers {GENERATOR_RESOURCE} units: start its generators with "
            f"ray start --address HEAD --resources '{{\"{GENERATOR_RESOURCE}\": 1}}'"
        )
    if wanted is not None and not 1 <= wanted <= available:
        raise SurgeError(
            f"--generators {wanted}: the cluster offers {available} {GENERATOR_RESOURCE} unit(s)"
        )
    return wanted or available


@dataclass
class RayLoadTest:
    config: LoadTestConfig
    address: str | None = None  # the head's host:port; None: the cluster this machine belongs to
    namespace: str = DEFAULT_NAMESPACE
    generators: int | None = None  # default: one per surge_loadgen unit
    on_second: Progress | None = None
    _emitted: int = field(default=0, init=False)  # the last second shown

    async def run(self) -> dict[str, Any]:
        guard = HostGuard(self.config.allow_remote)
        for url in (self.config.url, *self.config.titles):
            await guard.check(url)  # a clear error here, before any machine starts
        await join_cluster(self.address, self.namespace)
        loop = asyncio.get_running_loop()
        resources = await loop.run_in_executor(None, ray.cluster_resources)
        count = plan_generators(resources.get(GENERATOR_RESOURCE, 0.0), self.generators)
        shares = [dataclasses.replace(self.config, share=(i, count)) for i in range(count)]
        actor_class = ray.remote(GeneratorActor)
        actors: list[Any] = [
            actor_class.options(
                num_cpus=0,
                resources={GENERATOR_RESOURCE: 1},
                scheduling_strategy="SPREAD",
                max_restarts=0,  # a lost generator is reported, not replayed
            ).remote(share)
            for share in shares
        ]
        try:
            return await self._drive(actors, shares)
        finally:
            for actor in actors:
                with contextlib.suppress(RayError, ValueError):
                    ray.kill(actor, no_restart=True)

    async def _drive(self, actors: list[Any], shares: list[LoadTestConfig]) -> dict[str, Any]:
        try:
            nodes = await asyncio.wait_for(
                asyncio.gather(*(actor.where.remote() for actor in actors)), READY_TIMEOUT_S
            )
        except TimeoutError:
            raise SurgeError(
                f"not every load generator was placed within {READY_TIMEOUT_S:.0f} s: are the "
                f"{GENERATOR_RESOURCE} units of the cluster free? (ray status)"
            ) from None
        except RayError as err:
            raise SurgeError(f"a load generator failed to start: {err}".splitlines()[0]) from None
        generators = [
            _Generator(actor, GeneratorRun(str(node), len(share.arrivals())))
            for actor, node, share in zip(actors, nodes, shares, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(g.actor.start.remote() for g in generators)), CALL_TIMEOUT_S)
        handled = self._handle_interrupt(generators)
        try:
            await self._stream(generators)
            await asyncio.gather(*(self._collect(g) for g in generators))
        finally:
            if handled:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        return build_report(self.config, [g.run for g in generators])

    def _handle_interrupt(self, generators: Sequence[_Generator]) -> bool:
        def interrupt() -> None:
            for g in generators:
                with contextlib.suppress(RayError, ValueError):
                    g.actor.stop.remote()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)
            return True
        return False

    async def _stream(self, generators: Sequence[_Generator]) -> None:
        """Fetch every generator's rows as they come; show each second once all have sent it."""
        end = self.config.duration + self.config.grace + END_MARGIN_S

        async def follow(g: _Generator) -> None:
            deadline = asyncio.get_running_loop().time() + end
            while not g.done and g.run.lost is None:
                try:
                    streamed: Streamed = await asyncio.wait_for(
                        g.actor.seconds.remote(len(g.run.streamed), FETCH_WAIT_S), CALL_TIMEOUT_S
                    )
                except TimeoutError:
                    g.run.lost = f"no answer in {CALL_TIMEOUT_S:.0f} s"
                except RayError as err:
                    g.run.lost = _why_lost(err)
                else:
                    g.add(streamed.rows)
                    g.errors, g.done = streamed.errors, streamed.done
                    if not g.done and asyncio.get_running_loop().time() > deadline:
                        g.run.lost = "its run did not end in time"
                self._emit(generators)

        await asyncio.gather(*(follow(g) for g in generators))

    def _emit(self, generators: Sequence[_Generator]) -> None:
        for key in ready_keys([g.sent(self._emitted) for g in generators], self._emitted):
            rows = [g.by_key[key] for g in generators if key in g.by_key]
            if self.on_second is not None:
                self.on_second(merge_seconds(rows), sum(g.errors for g in generators))
            self._emitted = key

    async def _collect(self, g: _Generator) -> None:
        if g.run.lost is not None:
            return
        try:
            g.run.tally = await asyncio.wait_for(g.actor.result.remote(), CALL_TIMEOUT_S)
        except TimeoutError:
            g.run.lost = f"no totals in {CALL_TIMEOUT_S:.0f} s"
        except RayError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, SurgeError):
                raise SurgeError(f"load generator on {g.run.node}: {cause}") from None
            g.run.lost = _why_lost(err)


def _why_lost(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:200]


async def run_on_cluster(
    config: LoadTestConfig,
    address: str | None,
    namespace: str = DEFAULT_NAMESPACE,
    generators: int | None = None,
    on_second: Callable[[Second, int], None] | None = None,
) -> dict[str, Any]:
    """A load test spread over the cluster's generators, and its merged report."""
    return await RayLoadTest(config, address, namespace, generators, on_second).run()
