"""Carries out the players' decisions over HTTP: one aiohttp session shared by every virtual viewer.

The per-request path is kept small: URLs are resolved once per playlist text (``loadtest.playlists``
caches them), bodies are counted chunk by chunk and dropped, the clock is the loop's, and timers are the
players' own waits (one per segment, not a tick per player).

Shape of a run: a launcher starts viewers at their arrival times; each viewer runs sessions back to back
(``on_end="replay"``) until the end of the run, when every viewer is cancelled and its session is closed
at that instant; a ticker closes each second of the time series and reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from loadtest import cmcd
from loadtest.config import LoadTestConfig
from loadtest.hosts import HostGuard, RemoteRefused
from loadtest.metrics import Recorder, Second, ViewerStats, played_in, second_of
from loadtest.player import (
    AUDIO,
    VIDEO,
    Abort,
    Continue,
    Finish,
    Load,
    LoadInit,
    LoadPlaylist,
    LoadSegment,
    Phase,
    PlayerConfig,
    PlayerCore,
    SessionResult,
    Wait,
)
from loadtest.playlists import Master, Media, Rendition, read_master, read_media
from loadtest.report import build_report
from loadtest.scenario import Arrival
from loadtest.steering import (
    DEFAULT_TTL,
    InvalidSteering,
    choose_pathway,
    parse_manifest,
    steering_request_url,
)
from loadtest.tally import GeneratorRun, Tally, TitleViewers
from media.errors import InvalidPlaylist

USER_AGENT = "surge-loadtest/0.1"
REDIRECTS = frozenset((301, 302, 303, 307, 308))
MAX_REDIRECTS = 10
MIN_WAIT = 0.001  # never spin: a wait is at least this long
FAILED_SESSION_PAUSE = 1.0  # wall seconds before a viewer whose session failed tries again


class FetchFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    nbytes: int
    seconds: float
    text: str | None = None
    ttfb: float | None = None  # seconds to the first byte of the last hop


def _error_kind(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(
        error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError
    ):
        return "disconnected"
    return "client_error"


@dataclass(slots=True)
class Exchange:
    """What one GET (and its redirects) has produced so far; kept when it fails half-way."""

    url: str
    start: float
    status: int = 0
    ttfb: float | None = None
    nbytes: int = 0
    body: bytes = b""
    x_cache: str | None = None
    served_by: str | None = None


class NewestIdleFirst(aiohttp.TCPConnector):
    """A pool that hands out the idle connection released last, as Chromium's socket pool does ("the
    newest used idle socket", TransportClientSocketPool::AssignIdleSocketToRequest); aiohttp's own hands
    out the oldest. It decides which connection carries which segment: with aiohttp's order, a viewer's
    video segments all rode one connection and its audio ones the other, so the video connection grew the
    larger window and took more of a shared link than in Chromium, where the two alternate."""

    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        if idle and idle[-1][0] is protocol:
            idle.rotate(1)  # aiohttp reuses from the left: the one just released goes there


class Fetcher:
    """GETs with timing, manual redirects (each hop checked by the host guard) and recording."""

    def __init__(self, session: aiohttp.ClientSession, recorder: Recorder, guard: HostGuard) -> None:
        self.session = session
        self.recorder = recorder
        self.guard = guard
        self.clock = asyncio.get_running_loop().time  # the players' clock, the one timers run on

    async def get(
        self,
        url: str,
        object_type: str,
        headers: dict[str, str] | None = None,
        *,
        text: bool = False,
        exchange: Exchange | None = None,
    ) -> Fetched:
        """The body's size (and text, for playlists); raises ``FetchFailed`` after recording a failure.

        ``exchange``, when given, shows the progress to someone watching it (the abandon rule).
        """
        # perf_counter: uvloop's clock counts whole ms
        exchange = exchange or Exchange(url, time.perf_counter())
        error: str | None
        try:
            await self._exchange(exchange, headers, text)
            error = f"http_{exchange.status}" if exchange.status >= 400 else None
        except RemoteRefused:
            error = "refused_remote"
        except FetchFailed as failure:
            error = failure.kind
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = _error_kind(failure)
        seconds = time.perf_counter() - exchange.start
        self.recorder.record(
            object_type,
            latency=seconds,
            ttfb=exchange.ttfb,
            nbytes=exchange.nbytes,
            error=error,
            x_cache=exchange.x_cache,
            served_by=exchange.served_by,
        )
        if error is not None:
            raise FetchFailed(error)
        body = exchange.body.decode("utf-8", "replace") if text else None
        return Fetched(exchange.url, exchange.nbytes, seconds, body, exchange.ttfb)

    async def _exchange(self, exchange: Exchange, headers: dict[str, str] | None, text: bool) -> None:
        for _ in range(MAX_REDIRECTS + 1):
            # Every URL here is already encoded (made by yarl, or by cmcd.with_query): skip requoting.
            target = URL(exchange.url, encoded=True)
            async with self.session.get(target, headers=headers, allow_redirects=False) as response:
                exchange.ttfb = time.perf_counter() - exchange.start
                exchange.status = response.status
                location = response.headers.get("Location")
                if exchange.status in REDIRECTS and location:
                    exchange.url = str(response.url.join(URL(location)))
                    await self.guard.check(exchange.url)
                    continue
                exchange.x_cache = response.headers.get("X-Cache")
                exchange.served_by = response.headers.get("X-Served-By")
                if text or exchange.status >= 400:  # read error bodies too: the connection stays reusable
                    exchange.body = await response.read()
                    exchange.nbytes = len(exchange.body)
                else:
                    async for chunk in response.content.iter_any():
                        exchange.nbytes += len(chunk)
                return
        raise FetchFailed("too_many_redirects")


@dataclass
class _Steering:
    uri: str
    pathway: str
    due: float
    ttl: float = DEFAULT_TTL


_OBJECT_TYPE = {VIDEO: "v", AUDIO: "a"}
_FAILURES = (FetchFailed, InvalidPlaylist, RemoteRefused)


class Session:
    """One viewer's one playback session: master, steering, then the core's actions until it finishes."""

    def __init__(self, run: Run, url: str, sid: str) -> None:
        self.run = run
        self.url = str(URL(url))  # encoded once, as the fetcher expects
        self.fetcher = run.fetcher
        self.config = run.player_config
        self.cmcd_mode = run.config.cmcd
        self.cmcd = cmcd.Session(sid=sid, speed=self.config.speed)
        self.media: dict[tuple[str, int], Media] = {}
        self.core: PlayerCore | None = None
        self.ladder: tuple[Rendition, ...] = ()
        self.master: Master | None = None
        self.steering: _Steering | None = None
        self.loads: set[asyncio.Task[None]] = set()  # the core's loads in flight, one per track at most

    def _cmcd(self, url: str, keys: dict[str, cmcd.Value]) -> tuple[str, dict[str, str] | None]:
        if self.cmcd_mode == "query":
            return cmcd.with_query(url, keys), None
        if self.cmcd_mode == "headers":
            return url, cmcd.headers(keys)
        return url, None

    async def play(self, started: float) -> SessionResult:
        """Runs until the title ends or the session fails; cancelled at the end of the run."""
        if not await self._open():
            return _empty_session(failed=True)
        clock = self.fetcher.clock
        core = self.core = PlayerCore(
            [r.bitrate for r in self.ladder],
            has_audio=self.ladder[0].audio_url is not None,
            started_at=started,
            config=self.config,
            peaks=[r.bandwidth for r in self.ladder],
        )
        self.run.cores[core] = self
        try:
            while True:
                now = clock()
                if self.steering is not None and now >= self.steering.due:
                    await self._switch_pathway(await self._steer(self.steering.pathway))
                    now = clock()
                action = core.next_action(now)
                if isinstance(action, Finish):
                    return core.finish(now)
                if isinstance(action, Wait):
                    until = action.until if self.steering is None else min(action.until, self.steering.due)
                    await self._wait(None if until == float("inf") else max(until - now, MIN_WAIT))
                    continue
                self.loads.add(asyncio.create_task(self._attempt(core, action)))
        finally:
            await self._drop_loads()

    async def _wait(self, seconds: float | None) -> None:
        """Until ``seconds`` pass (None: forever) or a load in flight ends, whichever is first."""
        if not self.loads:
            await asyncio.sleep(MIN_WAIT if seconds is None else seconds)  # None: nothing to wait for
            return
        done, _ = await asyncio.wait(self.loads, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        self.loads -= done
        for task in done:
            task.result()  # a bug in a load is raised here, not lost

    async def _drop_loads(self) -> None:
        loads, self.loads = self.loads, set()
        for task in loads:
            task.cancel()
        if loads:
            await asyncio.wait(loads)

    async def _attempt(self, core: PlayerCore, action: Load) -> None:
        try:
            await self._load(core, action)
        except _FAILURES as failure:
            self._note(failure, "playlist")
            core.on_failure(self.fetcher.clock(), action)

    def _note(self, failure: Exception, object_type: str) -> None:
        """Count a failure that is not an HTTP one (those are counted by the fetcher)."""
        if isinstance(failure, RemoteRefused):
            self.run.recorder.mark_error(object_type, "refused_remote")
        elif isinstance(failure, InvalidSteering):
            self.run.recorder.mark_error(object_type, "invalid_steering")
        elif isinstance(failure, InvalidPlaylist):
            self.run.recorder.mark_error(object_type, "invalid_playlist")

    async def _open(self) -> bool:
        """The master and, with Content Steering, the first manifest: sets the ladder to play."""
        url, headers = self._cmcd(self.url, cmcd.request_keys(self.cmcd, object_type="m", startup=True))
        try:
            fetched = await self.fetcher.get(url, "manifest", headers, text=True)
            assert fetched.text is not None
            self.master = read_master(fetched.text, fetched.url)
            await self.fetcher.guard.check_hosts(self.master.hosts)
        except _FAILURES as failure:
            self._note(failure, "manifest")
            return False
        pathway = self.master.first_pathway
        if self.master.steering is not None:
            self.steering = _Steering(self.master.steering.server_uri, pathway, due=self.fetcher.clock())
            pathway = await self._steer(pathway)
        self.ladder = self.master.ladder(pathway)
        return True

    async def _load(self, core: PlayerCore, action: Load) -> None:
        rendition = self.ladder[action.rung]
        if isinstance(action, LoadPlaylist):
            source = rendition.url if action.track == VIDEO else rendition.audio_url
            assert source is not None
            url, headers = self._cmcd(
                source, cmcd.request_keys(self.cmcd, object_type="m", startup=core.starting)
            )
            fetched = await self.fetcher.get(url, "playlist", headers, text=True)
            assert fetched.text is not None
            media = read_media(fetched.text, fetched.url)
            await self.fetcher.guard.check_hosts(media.hosts)
            self.media[action.track, action.rung] = media
            core.on_playlist(
                self.fetcher.clock(),
                action.track,
                action.rung,
                media.timeline,
                fetched.seconds,
                fetched.ttfb or 0.0,
            )
            return
        media = self.media[action.track, action.rung]
        if isinstance(action, LoadInit):
            assert media.init_url is not None
            url, headers = self._cmcd(
                media.init_url, cmcd.request_keys(self.cmcd, object_type="i", startup=core.starting)
            )
            await self.fetcher.get(url, "init", headers)
            core.on_init(self.fetcher.clock(), action.track, action.rung)
            return
        index = action.index
        video = action.track == VIDEO
        keys = cmcd.request_keys(
            self.cmcd,
            object_type=_OBJECT_TYPE[action.track],
            buffer_ms=core.buffer * 1000,
            duration_ms=media.timeline.durations[index] * 1000,
            bitrate_bps=rendition.bitrate if video else None,
            top_bitrate_bps=self.ladder[-1].bitrate if video else None,
            throughput_bps=core.throughput,
            next_object=media.next_refs[index],
            startup=core.starting,
            starved=core.take_starved(),
        )
        url, headers = self._cmcd(media.urls[index], keys)
        byte_range = media.ranges[index]
        if byte_range is not None:
            headers = (headers or {}) | {"Range": byte_range}
        if action.track == VIDEO:
            watched = await self._watched(core, action, url, headers)
            if watched is None:
                return
            fetched = watched
        else:
            # In a task of its own, as a video segment's: two segments asked for together go out in the
            # order the core asked, video first. The first response's bytes are the first on the link, and
            # in hls.js's traces (bench/abr-fidelity) that is the video one.
            fetched = await asyncio.ensure_future(self.fetcher.get(url, action.track, headers))
        now = self.fetcher.clock()
        core.on_segment(now, action.track, action.rung, index, fetched.nbytes, fetched.seconds, fetched.ttfb)
        if self.run.on_segment is not None:
            self.run.on_segment(now, action, fetched, core)

    async def _watched(
        self, core: PlayerCore, action: LoadSegment, url: str, headers: dict[str, str] | None
    ) -> Fetched | None:
        """A video segment, fetched while the core may abandon it (hls.js checks every 100 ms); None when
        it did. The clocks differ: the core's is the loop's, the exchange's ``perf_counter``."""
        clock = self.fetcher.clock
        started, sent = clock(), time.perf_counter()
        exchange = Exchange(url, sent)
        fetch = asyncio.ensure_future(self.fetcher.get(url, action.track, headers, exchange=exchange))
        try:
            while not fetch.done():
                now = clock()
                check = core.check_load(now, action, started, exchange.ttfb, exchange.nbytes)
                match check:
                    case Abort():
                        fetch.cancel()
                        await asyncio.wait((fetch,))  # the request is dropped, not failed: no error
                        if not fetch.cancelled():
                            fetch.exception()  # finished or failed meanwhile: retrieved, and ignored
                        core.on_abort(clock(), action)
                        return None
                    case Continue(at=at):
                        wait = None if at == float("inf") else max(at - now, MIN_WAIT)
                        await asyncio.wait((fetch,), timeout=wait)
            return fetch.result()
        finally:
            if not fetch.done():
                fetch.cancel()

    async def _steer(self, pathway: str) -> str:
        """Fetch the steering manifest; returns the pathway to use. Failures keep the current one."""
        steering = self.steering
        assert steering is not None and self.master is not None
        clock = self.fetcher.clock
        throughput = self.core.throughput if self.core is not None else None
        try:
            fetched = await self.fetcher.get(
                steering_request_url(steering.uri, steering.pathway, throughput), "steering", text=True
            )
            assert fetched.text is not None
            manifest = parse_manifest(fetched.text)
        except _FAILURES as failure:
            self._note(failure, "steering")
            steering.due = clock() + steering.ttl
            return pathway
        steering.ttl = manifest.ttl
        steering.due = clock() + manifest.ttl
        if manifest.clones:
            cloned = self.master.with_clones(manifest.clones)
            try:
                await self.fetcher.guard.check_hosts(cloned.hosts)
                self.master = cloned
            except RemoteRefused:
                self.run.recorder.mark_error("steering", "refused_remote")
        if manifest.reload_uri:
            reload_uri = str(URL(fetched.url).join(URL(manifest.reload_uri)))
            with contextlib.suppress(RemoteRefused):
                await self.fetcher.guard.check(reload_uri)
                steering.uri = reload_uri
        chosen = choose_pathway(manifest.priority, self.master.pathways, pathway)
        steering.pathway = chosen
        return chosen

    async def _switch_pathway(self, pathway: str) -> None:
        assert self.master is not None and self.core is not None
        ladder = self.master.ladder(pathway)
        if ladder == self.ladder or len(ladder) != len(self.ladder):
            return
        self.ladder = ladder
        await self._drop_loads()  # a load of the old pathway must not report into the new one
        self.media.clear()
        self.core.forget_sources()


def _empty_session(*, failed: bool) -> SessionResult:
    """A session that ended before it knew its ladder: the master failed, or the run ended first."""
    return SessionResult(
        started=False,
        startup=None,
        stalls=0,
        stall_time=0.0,
        played=(),
        switches_up=0,
        switches_down=0,
        ended=False,
        failed=failed,
        errors=int(failed),
    )


@dataclass(frozen=True)
class _Closed:
    """Where the last row of the series left the running totals."""

    wall: float
    cpu: float
    wait: float | None
    stalls: int = 0
    played: dict[str, float] = field(default_factory=dict)


Progress = Callable[[Second, int], None]  # a closed second, and the errors counted so far
SessionDone = Callable[[SessionResult, list[str]], None]  # a session's numbers, its ladder's labels
# A segment loaded (for traces, e.g. the abr-fidelity bench): when, what, how, and the core after it.
SegmentDone = Callable[[float, LoadSegment, Fetched, PlayerCore], None]


class Run:
    def __init__(
        self,
        config: LoadTestConfig,
        on_second: Progress | None = None,
        on_session: SessionDone | None = None,
        on_segment: SegmentDone | None = None,
    ) -> None:
        self.config = config
        self.on_session = on_session
        self.on_segment = on_segment
        self.player_config: PlayerConfig = config.player()
        self.on_second = on_second
        self.recorder = Recorder()
        self.overall = ViewerStats()
        self.titles: dict[str, TitleViewers] = {}
        self.series: list[Second] = []
        self.cores: dict[PlayerCore, Session] = {}  # the sessions playing now
        self.active = 0
        self.finished_stalls = 0
        self.finished_played: dict[str, float] = {}  # media seconds by rendition label, ended sessions
        self.edges: int | None = None
        self.started_at = 0.0
        self.stop_at = 0.0
        self.interrupted = False
        self.fetcher: Fetcher
        self._drive_task: asyncio.Task[None] | None = None
        self._last = _Closed(wall=0.0, cpu=0.0, wait=None)

    # --- viewers --------------------------------------------------------------------------------

    async def _viewer(self, arrival: Arrival) -> None:
        clock = self.fetcher.clock
        while clock() < self.stop_at:
            session = Session(self, arrival.url, uuid.uuid4().hex)
            result = await self._session(session, arrival)
            if self.config.on_end == "leave":
                return
            if result.failed:
                await asyncio.sleep(FAILED_SESSION_PAUSE)

    async def _session(self, session: Session, arrival: Arrival) -> SessionResult:
        clock = self.fetcher.clock
        self.active += 1
        result: SessionResult | None = None
        try:
            result = await session.play(clock())
            return result
        finally:
            self.active -= 1
            core = session.core
            if core is not None:
                self.cores.pop(core, None)
            if result is None:  # cancelled at the end of the run: close the session at this instant
                result = core.finish(clock()) if core is not None else _empty_session(failed=False)
            self._count(arrival, session, result)

    def _count(self, arrival: Arrival, session: Session, result: SessionResult) -> None:
        labels = [r.label for r in session.ladder]
        bitrates = [r.bitrate for r in session.ladder]
        title = self.titles.setdefault(arrival.url, TitleViewers(background=arrival.background))
        title.stats.add(result, bitrates, labels, self.player_config.speed)
        self.overall.add(result, bitrates, labels, self.player_config.speed)
        self.finished_stalls += result.stalls
        for label, seconds in zip(labels, result.played, strict=False):
            self.finished_played[label] = self.finished_played.get(label, 0.0) + seconds
        if self.on_session is not None:
            self.on_session(result, labels)

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> Tally:
        """The whole run, from the first arrival to the end of ``duration`` (or ``interrupt``)."""
        guard = HostGuard(self.config.allow_remote)
        for url in (self.config.url, *self.config.titles):
            await guard.check(url)
        connections = _raise_open_files(self.config.total_players + 64)
        connector = NewestIdleFirst(
            limit=connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        timeout = aiohttp.ClientTimeout(total=self.config.timeout, sock_connect=self.config.connect_timeout)
        loop = asyncio.get_running_loop()
        cpu_start, wall_clock = time.process_time(), time.time()  # the report's start date
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            read_bufsize=2**18,
        ) as http:
            self.fetcher = Fetcher(http, self.recorder, guard)
            self.started_at = loop.time()
            self.stop_at = self.started_at + (0.0 if self.interrupted else self.config.duration)
            self._last = _Closed(wall=self.started_at, cpu=cpu_start, wait=_cpu_wait())
            background = [asyncio.create_task(self._ticker())]
            if await self._fleet_available(http):
                background.append(asyncio.create_task(self._poll_fleet(http)))
            viewers: set[asyncio.Task[None]] = set()
            try:
                await self._drive(viewers)
            finally:
                for task in (*viewers, *background):
                    task.cancel()
                await asyncio.wait([*viewers, *background], timeout=self.config.grace)
                self._close_second(loop.time())  # the sessions cut at the end are in it
            wall = loop.time() - self.started_at
        return Tally(
            recorder=self.recorder,
            overall=self.overall,
            titles=self.titles,
            series=self.series,
            active=self.active,
            cpu_seconds=time.process_time() - cpu_start,
            wall=wall,
            started=wall_clock,
            max_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            interrupted=self.interrupted,
        )

    async def _drive(self, viewers: set[asyncio.Task[None]]) -> None:
        """Launch the viewers and wait for the end of the run; Ctrl-C ends it early, with a report."""
        loop = asyncio.get_running_loop()
        drive = self._drive_task = asyncio.create_task(self._launch_and_wait(viewers))
        handled = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
            handled = True
        try:
            await drive
        except asyncio.CancelledError:
            if not self.interrupted:
                raise
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)

    async def _launch_and_wait(self, viewers: set[asyncio.Task[None]]) -> None:
        await self._launch(viewers)
        if viewers:  # every viewer may leave before the end (on_end="leave")
            loop = asyncio.get_running_loop()
            await asyncio.wait(set(viewers), timeout=max(0.0, self.stop_at - loop.time()))

    async def _launch(self, viewers: set[asyncio.Task[None]]) -> None:
        clock = self.fetcher.clock
        for arrival in self.config.arrivals():
            at = self.started_at + arrival.at
            if at >= self.stop_at:
                break
            if at > clock():
                await asyncio.sleep(at - clock())
            task = asyncio.create_task(self._viewer(arrival))
            viewers.add(task)
            task.add_done_callback(viewers.discard)

    def interrupt(self) -> None:
        """End the run now (Ctrl-C, or the coordinator of several generators): the report covers that much."""
        self.interrupted = True
        self.stop_at = asyncio.get_running_loop().time()
        if self._drive_task is not None:
            self._drive_task.cancel()

    def played_by_label(self, now: float) -> dict[str, float]:
        """Media seconds played by rendition label since the start of the run, as of ``now``."""
        played = dict(self.finished_played)
        for core, session in self.cores.items():
            core.advance(now)  # what its next event would do anyway: the playhead to ``now``
            for rendition, seconds in zip(session.ladder, core.played, strict=False):
                played[rendition.label] = played.get(rendition.label, 0.0) + seconds
        return played

    def stalled_now(self, now: float) -> int:
        return sum(1 for core in self.cores if core.phase_at(now) is Phase.STALLED)

    async def _ticker(self) -> None:
        clock = self.fetcher.clock
        due = self.started_at + 1.0
        while True:
            await asyncio.sleep(max(0.0, due - clock()))
            now = clock()
            self._close_second(now, lag=max(0.0, now - due))
            due += 1.0
            if due < now:  # a loop so late it missed whole seconds: skip them rather than burst
                due = now + 1.0

    def _close_second(self, now: float, lag: float = 0.0) -> None:
        """A row of the series for what happened since the last one (the last row of a run may be part
        of a second: everything counted is in some row)."""
        last = self._last
        cpu, wait = time.process_time(), _cpu_wait()
        elapsed = max(now - last.wall, 1e-6)
        played = self.played_by_label(now)
        stalls = self.finished_stalls + sum(core.stalls for core in self.cores)
        t = now - self.started_at
        key = max(round(t), self.series[-1].key + 1 if self.series else 1)
        row = second_of(
            t,
            self.recorder.close_window(),
            key=key,
            active=self.active,
            stalled=self.stalled_now(now),
            rebuffers=max(0, stalls - last.stalls),
            cpu=(cpu - last.cpu) / elapsed,
            cpu_wait=None if wait is None or last.wait is None else (wait - last.wait) / elapsed,
            loop_lag=lag,
            edges=self.edges,
            played=played_in(last.played, played),
        )
        self.series.append(row)
        self._last = _Closed(wall=now, cpu=cpu, wait=wait, stalls=stalls, played=played)
        if self.on_second is not None:
            self.on_second(row, self.recorder.errors)

    async def _fleet_available(self, http: aiohttp.ClientSession) -> bool:
        self.edges = await self._fleet_edges(http)
        return self.edges is not None

    async def _poll_fleet(self, http: aiohttp.ClientSession) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.edges = await self._fleet_edges(http)

    async def _fleet_edges(self, http: aiohttp.ClientSession) -> int | None:
        """Edge count from a surge fleet's ``/fleet``; None when the target is not a fleet."""
        try:
            await self.fetcher.guard.check(self.config.fleet)
            async with http.get(self.config.fleet, timeout=aiohttp.ClientTimeout(total=1.0)) as response:
                if response.status != 200:
                    return None
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, RemoteRefused):
            return None
        edges = document.get("edges") if isinstance(document, dict) else None
        if isinstance(edges, list):
            return len(edges)
        return edges if isinstance(edges, int) and not isinstance(edges, bool) else None


def _cpu_wait() -> float | None:
    """Seconds this thread (the event loop's) has been runnable but waiting for a CPU; Linux only."""
    try:
        with open("/proc/thread-self/schedstat") as schedstat:  # noqa: PTH123 - procfs, never blocks
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _raise_open_files(wanted: int) -> int:
    """Raise the soft open-files limit toward ``wanted`` + headroom; returns the connection cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + 256 if hard == resource.RLIM_INFINITY else min(wanted + 256, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, min(wanted, soft - 128))


async def run_loadtest(config: LoadTestConfig, on_second: Progress | None = None) -> dict[str, Any]:
    """A run on this machine, and its report."""
    tally = await Run(config, on_second).run()
    return build_report(config, [GeneratorRun("local", len(config.arrivals()), tally)])
