"""``surge``: parses flags and calls the packages. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from tqdm import tqdm

from loadtest.cli import add_loadtest_parser
from media.errors import AlreadyExists, InvalidInput, SurgeError
from media.ladder import DEFAULT_LADDER, parse_ladder
from media.layout import Library
from media.signing import SigningKeys
from media.title import TitleInfo
from origin.config import PACKAGERS
from service.loop import run, run_server
from service.tls import TlsFiles
from service.urls import WILDCARD_HOSTS, is_loopback_host, is_loopback_url, validate_base_url
from surge.config import add_config_option, parse_args
from transcoder.chunks import Chunked, Encoding
from transcoder.package import package_title
from transcoder.plan import X264_PRESETS, PackageConfig
from transcoder.sample import make_sample

if TYPE_CHECKING:
    from aiohttp import web

    from edge.router.app import RouterSettings
    from edge.router.backends import EdgeBackend
    from edge.router.fleet import Fleet
    from origin.config import OriginConfig

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEMO_TITLE_ID = "demo"
DEMO_NAME = "surge demo"


def _progress_bar(label: str, quiet: bool) -> tuple[Callable[[float], None], Callable[[], None]]:
    """A terminal bar in percent, shown from the first report; returns (update with a fraction, close)."""
    bars: list[tqdm[NoReturn]] = []

    def update(fraction: float) -> None:
        if quiet:
            return
        if not bars:
            bars.append(
                tqdm(
                    total=100,
                    desc=label,
                    dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                )
            )
        bars[0].update(round(fraction * 100) - bars[0].n)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _package(
    source: Path,
    out: Path,
    config: PackageConfig,
    *,
    name: str | None,
    title_id: str | None,
    force: bool,
    quiet: bool,
    staging_root: Path | None = None,
    slots: int = 1,
) -> TitleInfo:
    if out.exists() and not force:
        raise AlreadyExists(f"{out} already exists (use --force to replace it)")
    update, close = _progress_bar(f"packaging {source.name}", quiet)

    def announce(encoding: Encoding) -> None:
        if isinstance(encoding, Chunked) and not quiet:
            print(f"encoding the video in {len(encoding.chunks)} chunks, {encoding.parallel} at once",
                  file=sys.stderr)  # fmt: skip

    try:
        return run(
            package_title(
                source,
                out,
                config,
                name=name,
                title_id=title_id,
                replace=force,
                staging_root=staging_root,
                on_progress=update,
                slots=slots,
                on_encoding=announce,
            )
        )
    finally:
        close()


def _config(args: argparse.Namespace) -> PackageConfig:
    return PackageConfig(
        ladder=parse_ladder(args.ladder) if args.ladder else DEFAULT_LADDER,
        preset=args.preset,
        segment_duration=args.segment_duration,
        keyframe_interval=args.keyframe_interval,
        audio_language=args.audio_language,
        chunk_seconds=args.chunk_seconds,
    )


def _summary(info: TitleInfo, out: Path) -> str:
    rungs = ", ".join(f"{r.name} {r.width}x{r.height} {r.bandwidth // 1000}k" for r in info.renditions)
    audio = f" + audio {info.audio.codecs}" if info.audio else " (no audio)"
    return (
        f"packaged {info.name!r} ({info.duration:.1f} s) into {out}: {rungs}{audio}\n"
        f"master: {out / 'master.m3u8'}"
    )


def cmd_transcode(args: argparse.Namespace) -> int:
    source, out = Path(args.source), Path(args.out)
    if not source.is_file():
        raise SurgeError(f"{source}: no such file")
    if args.jobs < 1:
        raise InvalidInput("--jobs must be at least 1")
    info = _package(source, out, _config(args), name=args.name, title_id=args.id, force=args.force,
                    quiet=args.quiet, slots=args.jobs)  # fmt: skip
    print(_summary(info, out))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Make and package the sample title if needed, register it, then run the origin and print the URLs."""
    from origin.jobs import add_title
    from origin.store import TitleStore

    library = Library(Path(args.data))
    library.ensure_dirs()
    source = library.source_path(DEMO_TITLE_ID)
    source.parent.mkdir(parents=True, exist_ok=True)
    if not source.is_file():
        print(f"generating a {args.duration:.0f} s 720p sample with ffmpeg's lavfi sources", file=sys.stderr)
        partial = source.with_name("source.partial.mp4")
        make_sample(partial, width=1280, height=720, duration=args.duration)
        partial.rename(source)
    destination = library.title_dir(DEMO_TITLE_ID)
    if not (destination / "title.json").is_file():
        info = _package(
            source,
            destination,
            PackageConfig(preset="veryfast"),
            name=DEMO_NAME,
            title_id=DEMO_TITLE_ID,
            force=True,
            quiet=args.quiet,
            staging_root=library.staging_dir,
        )
        print(_summary(info, destination), file=sys.stderr)

    async def register() -> None:
        # As an upload is: queued; the origin's queue sees the published title.json and marks it ready.
        store = TitleStore(library.jobs_db_path)
        await store.open()
        try:
            if await store.get(DEMO_TITLE_ID) is None:
                await add_title(store, library, source, DEMO_TITLE_ID, DEMO_NAME)
        finally:
            await store.close()

    run(register())

    def announce(origin: str, fleet: str) -> None:
        print(
            f"surge demo is running (Ctrl-C to stop):\n"
            f"  player  {fleet}/player/#{DEMO_TITLE_ID}\n"
            f"  fleet   {fleet}/\n"
            f"  master  {fleet}/titles/{DEMO_TITLE_ID}/master.m3u8\n"
            f"  admin   {origin}/admin/   (token: $SURGE_ADMIN_TOKEN or {library.admin_token_path})",
            flush=True,
        )

    return _serve_up(args, announce)


def _origin_config(args: argparse.Namespace) -> OriginConfig:
    from origin.config import OriginConfig, parse_size

    return OriginConfig(
        data=Path(args.data),
        host=args.host,
        port=args.port,
        max_upload=parse_size(args.max_upload),
        min_free_disk=parse_size(args.min_free_disk),
        jobs=args.jobs,
        cors_origin=args.cors_origin,
        playlist_max_age=args.playlist_max_age,
        package=PackageConfig(preset=args.preset, chunk_seconds=args.chunk_seconds),
        packaging_attempts=args.packaging_attempts,
        retry_delay=args.retry_delay,
        fleet=getattr(args, "fleet", None),
        packagers=args.packagers,
        ray_address=args.ray_address,
        ray_namespace=args.ray_namespace,
        lease_duration=args.packager_lease,
        lease_start_timeout=args.packager_start_timeout,
    )


def _check_packagers(args: argparse.Namespace) -> None:
    """Workers on other machines reach the origin by its advertised URL: never a loopback one."""
    if args.packagers != "ray":
        return
    shown = args.public_host or (socket.gethostname() if args.host in WILDCARD_HOSTS else args.host)
    if is_loopback_host(shown):
        raise InvalidInput(
            f"--packagers ray: workers on other machines would be sent to {shown}, a loopback address: "
            "listen on an address they reach (--host ADDR, or --host 0.0.0.0 --public-host NAME)"
        )


def _run_origin(args: argparse.Namespace, on_listening: Callable[[str], None] | None = None) -> int:
    from origin.app import make_app
    from origin.app import on_listening as origin_listening
    from service.logs import configure_logging
    from service.serve import serve

    _check_packagers(args)
    config = dataclasses.replace(_origin_config(args), signing_keys=_signing_keys(args))
    configure_logging("origin", args.log_level)
    app = make_app(config)

    def listening(url: str) -> None:
        origin_listening(app, url)
        if on_listening is not None:
            on_listening(url)

    run_server(
        serve(
            app,
            config.host,
            config.port,
            shutdown_timeout=config.shutdown_timeout,
            on_listening=listening,
            name="origin",
            access_log=not args.no_access_log,
            public_host=args.public_host,
            tls=_tls(args),
        )
    )
    return 0


def cmd_origin(args: argparse.Namespace) -> int:
    return _run_origin(args)


def _admin_token(args: argparse.Namespace) -> str:
    from origin.auth import TOKEN_ENV

    token = args.token or os.environ.get(TOKEN_ENV)
    if token:
        return str(token)
    path = Library(Path(args.data)).admin_token_path
    try:
        return path.read_text().strip()
    except OSError:
        raise SurgeError(
            f"no admin token: pass --token, set {TOKEN_ENV}, or point --data at the origin's data"
        ) from None


def cmd_upload(args: argparse.Namespace) -> int:
    from origin.client import upload_file, wait_until_done

    source = Path(args.file)
    if not source.is_file():
        raise SurgeError(f"{source}: no such file")
    token = _admin_token(args)
    size = source.stat().st_size
    bar = None if args.quiet else tqdm(total=size, unit="B", unit_scale=True, desc=f"uploading {source.name}")
    try:
        created = run(upload_file(args.server, token, source, args.name, bar.update if bar else None))
    finally:
        if bar is not None:
            bar.close()
    title_id = created["id"]
    server = args.server.rstrip("/")
    print(f"uploaded {source.name} as {title_id} ({created['status']}): {server}/admin/titles/{title_id}")
    if not args.wait:
        return 0
    update, close = _progress_bar(f"packaging {title_id}", args.quiet)
    try:
        final = run(wait_until_done(args.server, token, title_id, update))
    finally:
        close()
    if final["status"] == "failed":
        raise SurgeError(f"packaging {title_id} failed: {final.get('error')}")
    print(f"ready: {server}{final['master']}")
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    from edge.app import make_app
    from edge.config import EdgeConfig
    from origin.config import parse_size
    from service.logs import configure_logging
    from service.serve import serve

    config = EdgeConfig(
        upstreams=tuple(args.upstream or ()),
        parent=args.parent,
        host=args.host,
        port=args.port,
        cache_mem=parse_size(args.cache_mem),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        cache_disk=parse_size(args.cache_disk) if args.cache_disk else 0,
        prefetch=args.prefetch,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        admin_token=args.admin_token,
        cors_origin=args.cors_origin,
        signing_keys=_signing_keys(args),
        access_log=not args.no_access_log,
        header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        stale_grace=args.stale_grace,
        **({"edge_id": args.id} if args.id else {}),
    )
    configure_logging("edge", args.log_level)
    app = make_app(config)
    run_server(
        serve(
            app,
            config.host,
            config.port,
            shutdown_timeout=config.shutdown_timeout,
            access_log=config.access_log,
            header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive_timeout,
            name="edge",
            advertise_url=args.advertise_url and validate_base_url(args.advertise_url, "--advertise-url"),
            public_host=args.public_host,
            tls=_tls(args),
        )
    )
    return 0


def _fleet_parts(
    args: argparse.Namespace,
    origin_url: str,
    bind_host: str,
    public_host: str | None,
    admin_token: str | None = None,
) -> tuple[Fleet, RouterSettings]:
    """The fleet and its router settings from command-line flags; ``admin_token``: the origin's."""
    from edge.router.app import RouterSettings
    from edge.router.backends import LocalProcesses
    from edge.router.fleet import Fleet, FleetConfig
    from edge.router.scaler import ScalerConfig
    from origin.auth import TOKEN_ENV

    token = admin_token or getattr(args, "admin_token", None)
    if token:
        os.environ[TOKEN_ENV] = token  # the edges it starts inherit it (kept out of their command lines)

    edge_args = ["--cache-mem", args.cache_mem, "--prefetch", str(args.prefetch)]
    edge_args += ["--log-level", args.log_level]
    if not args.edge_access_log:
        edge_args.append("--no-access-log")
    if (tls := _tls(args)) is not None:
        edge_args += ["--tls-cert", str(tls.cert.absolute()), "--tls-key", str(tls.key.absolute())]
    scaler = ScalerConfig(
        min_edges=args.min_edges,
        max_edges=args.max_edges,
        capacity=args.edge_capacity,
        scale_in_window=args.scale_in_window,
    )
    if not 0 <= args.standby_edges < args.max_edges:
        raise InvalidInput(f"--standby-edges must be 0 to {args.max_edges - 1} (below --max-edges)")
    config = FleetConfig(origin=origin_url, scaler=scaler, standby_edges=args.standby_edges)
    # No loopback URL leaves a fleet that was not told to bind loopback: edges on other machines (Ray) and
    # players elsewhere could not use it.
    if is_loopback_url(origin_url) and (args.backend == "ray" or not is_loopback_host(bind_host)):
        raise InvalidInput(
            f"the origin's URL {origin_url} is a loopback address, which edges and players on other machines"
            " cannot reach: give the origin's public URL (surge up: --host ADDR or --public-host NAME)"
        )
    if args.backend == "ray":
        try:
            from edge.router.ray_backend import RayEdges
        except ImportError:
            raise SurgeError("--backend ray needs the ray package: pip install 'surge[ray]'") from None
        backend: EdgeBackend = RayEdges(origin_url, args.ray_address, tuple(edge_args), args.ray_namespace,
                                   admin_token=token or None)  # fmt: skip
    else:
        backend = LocalProcesses(origin_url, tuple(edge_args), host=bind_host, public_host=public_host)
    fleet = Fleet(config, backend)
    settings = RouterSettings(
        origin=origin_url, steering=not args.no_steering, redirect=args.redirect, admin_token=token or None
    )
    return fleet, settings


def cmd_fleet(args: argparse.Namespace) -> int:
    from edge.router.app import make_app
    from service.logs import configure_logging
    from service.serve import Site, serve_all

    configure_logging("fleet", args.log_level)
    origin = validate_base_url(args.origin, "--origin")
    public_url = args.public_url and validate_base_url(args.public_url, "--public-url")
    public_host = urlsplit(public_url).hostname if public_url else None
    fleet, settings = _fleet_parts(args, origin, args.host, public_host)
    site = Site(make_app(fleet, settings), args.host, args.port, name="fleet", advertise_url=public_url)
    run_server(serve_all([site], tls=_tls(args)))
    return 0


def _serve_up(args: argparse.Namespace, announce: Callable[[str, str], None] | None = None) -> int:
    """Origin and fleet in one process (edges are child processes); ``announce(origin, fleet)``."""
    from edge.router.app import make_app as make_router
    from origin.app import make_app as make_origin
    from origin.app import on_listening as on_origin_listening
    from origin.fleet import FLEET_LINK
    from origin.keys import TOKEN
    from service.logs import configure_logging
    from service.serve import Site, serve_all

    _check_packagers(args)
    configure_logging("up", args.log_level)
    origin_config = _origin_config(args)
    urls: dict[str, str] = {}

    origin = make_origin(origin_config)

    def router() -> web.Application:
        # Built once the origin listens: the fleet needs its real URL (port 0 picks one) and its token.
        fleet, settings = _fleet_parts(args, urls["origin"], args.host, args.public_host, origin[TOKEN])
        return make_router(fleet, settings)

    def origin_listening(url: str) -> None:
        urls["origin"] = url
        on_origin_listening(origin, url)

    def fleet_listening(url: str) -> None:
        origin[FLEET_LINK].url = url  # deleting a title now purges it from the fleet
        if announce is not None:
            announce(urls["origin"], url)

    sites = [
        Site(origin, origin_config.host, origin_config.port, name="origin",
             on_listening=origin_listening, public_host=args.public_host),
        Site(router, args.host, args.fleet_port, on_listening=fleet_listening, name="fleet",
             public_host=args.public_host),
    ]  # fmt: skip
    run_server(serve_all(sites, shutdown_timeout=origin_config.shutdown_timeout, tls=_tls(args)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    def announce(origin: str, fleet: str) -> None:
        print(f"surge is up (Ctrl-C to stop):\n  fleet   {fleet}/  (status)\n  player  {fleet}/player/\n"
              f"  origin  {origin}/  (admin: {origin}/admin/)", flush=True)  # fmt: skip

    return _serve_up(args, announce)


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-edges", type=int, default=1, help="edges always running (default 1)")
    parser.add_argument("--max-edges", type=int, default=8, help="most edges at once (default 8)")
    parser.add_argument("--standby-edges", type=int, default=0,
                        help="edges kept started out of routing, promoted at once by a scale-out and then "
                             "replaced (counted in --max-edges; default 0)")  # fmt: skip
    parser.add_argument("--edge-capacity", type=_capacity, default="2000rps",
                        help="what one edge serves comfortably: 2000rps, 800mbit or both as 2000rps,800mbit "
                             "(a bare number is requests/s; default 2000rps)")  # fmt: skip
    parser.add_argument("--scale-in-window", type=float, default=300.0,
                        help="seconds of low demand before an edge is drained (default 300)")  # fmt: skip
    parser.add_argument("--cache-mem", default="512MiB", help="memory cache of each edge (default 512MiB)")
    parser.add_argument("--prefetch", type=int, default=2, help="segments each edge fills ahead (default 2)")
    parser.add_argument("--edge-access-log", action="store_true", help="a log line per edge request")
    parser.add_argument("--no-steering", action="store_true", help="no HLS Content Steering in masters")
    parser.add_argument("--redirect", action="store_true", help="answer masters with a 302 to the edge")
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where edges run: local processes (default) or the machines of a Ray cluster",
    )
    _ray_options(parser)


def _capacity(text: str) -> object:
    from edge.router.scaler import parse_capacity

    try:
        return parse_capacity(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _server_options(parser: argparse.ArgumentParser) -> None:
    from service.logs import LEVELS

    parser.add_argument(
        "--log-level", default="info", choices=LEVELS, help="least severe line logged (default info)"
    )


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    return TlsFiles.from_flags(args.tls_cert, args.tls_key)


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain (reloaded on SIGHUP)")
    parser.add_argument("--tls-key", help="the PEM private key of --tls-cert")


def _signing_keys(args: argparse.Namespace) -> SigningKeys | None:
    texts = list(args.signing_key or ())
    if args.signing_key_file:
        try:
            texts += Path(args.signing_key_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SurgeError(f"cannot read the signing key file {args.signing_key_file}: {err}") from None
        if not SigningKeys.from_texts(texts):
            raise SurgeError(f"the signing key file {args.signing_key_file} holds no key")
    return SigningKeys.from_texts(texts)


def _signing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signing-key", action="append", metavar="KEY",
                        help="serve only signed URLs (/t/<token>/titles/...) made with this key; "
                        "give it twice to rotate (the new key first)")  # fmt: skip
    parser.add_argument("--signing-key-file", metavar="FILE", help="signing keys, one a line, the new first")


def _origin_options(parser: argparse.ArgumentParser) -> None:
    _tls_options(parser)
    parser.add_argument("--data", default="./data", help="library root (default ./data)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--public-host",
        help="host name players and other machines use (default: HOST, or this machine's name for 0.0.0.0)",
    )
    parser.add_argument("--max-upload", default="4GiB", help="largest accepted upload (default 4GiB)")
    parser.add_argument(
        "--min-free-disk", default="1GiB", help="refuse uploads that leave less free (default 1GiB)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="packaging jobs at once (default 1)")
    _chunk_option(parser)
    parser.add_argument(
        "--packaging-attempts", type=int, default=3, help="tries after ffmpeg is killed or the disk fills"
    )
    parser.add_argument(
        "--retry-delay", type=float, default=2.0, help="seconds before the first retry, doubled after"
    )
    parser.add_argument("--cors-origin", default="*", help="Access-Control-Allow-Origin; '' disables CORS")
    parser.add_argument(
        "--playlist-max-age", type=int, default=2, help="Cache-Control max-age of playlists, s"
    )
    parser.add_argument(
        "--preset", default="veryfast", choices=X264_PRESETS, help="x264 preset for packaging"
    )
    parser.add_argument("--no-access-log", action="store_true", help="no log line per request (metrics stay)")
    parser.add_argument("--packagers", choices=PACKAGERS, default="local",
                        help="who packages: local ffmpeg processes (default, --jobs at once), workers on "
                        "the machines of a Ray cluster offering surge_packager units (ray), or worker "
                        "processes of this machine through the same HTTP routes (processes)")  # fmt: skip
    parser.add_argument("--packager-lease", type=float, default=30.0,
                        help="seconds a worker's job lease runs without renewal (default 30)")  # fmt: skip
    parser.add_argument("--packager-start-timeout", type=float, default=120.0,
                        help="seconds for a worker to be placed and start (default 120)")  # fmt: skip


def _ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", help="the Ray head's HOST:PORT (default: this machine's cluster)")
    parser.add_argument("--ray-namespace", default="surge",
                        help="Ray namespace of the edge actors (default surge)")  # fmt: skip


def _chunk_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chunk-seconds",
        type=int,
        default=60,
        help="encode a title longer than 2 chunks of this many seconds in chunks, in parallel, when more "
        "than one packaging job is free (default 60; 0: never)",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("surge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers by name (argparse exposes them only through its private actions)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("surge's parser has subcommands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surge", description="Adaptive HLS streaming: package, serve, scale out."
    )
    parser.add_argument("--version", action="version", version=f"surge {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    transcode = commands.add_parser("transcode", help="package one source video into an HLS title directory")
    transcode.add_argument("source", help="the source video file")
    transcode.add_argument("--out", required=True, help="directory to create (must not exist, see --force)")
    transcode.add_argument("--force", action="store_true", help="replace --out if it exists")
    transcode.add_argument("--name", help="human name of the title (default: the file name)")
    transcode.add_argument("--id", help="title id for title.json (default: made from the name)")
    transcode.add_argument(
        "--ladder",
        help="rungs as WxH@BITRATE,... e.g. 416x234@145k,640x360@365k (default: "
        + ",".join(str(r) for r in DEFAULT_LADDER)
        + ")",
    )
    transcode.add_argument(
        "--preset", default="veryfast", choices=X264_PRESETS, help="x264 preset (default veryfast)"
    )
    transcode.add_argument(
        "--segment-duration", type=int, default=6, help="target segment duration, s (default 6)"
    )
    transcode.add_argument("--keyframe-interval", type=int, default=2, help="IDR interval, s (default 2)")
    transcode.add_argument("--audio-language", default="und", help="BCP 47 language when the source has none")
    _chunk_option(transcode)
    transcode.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="ffmpeg processes at once for a title in chunks"
    )
    transcode.add_argument("--quiet", action="store_true", help="no progress bar")
    transcode.set_defaults(handler=cmd_transcode)

    demo = commands.add_parser(
        "demo", help="make a sample title, package it and serve it; prints the URL to open"
    )
    demo.add_argument("--duration", type=float, default=20.0, help="length of the sample, s (default 20)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    _origin_options(demo)
    _fleet_options(demo)
    _server_options(demo)
    demo.add_argument("--fleet-port", type=int, default=8000, help="the fleet's port (default 8000)")
    demo.set_defaults(handler=cmd_demo)
    origin = commands.add_parser(
        "origin", help="serve the library and take uploads (admin API, packaging queue)"
    )
    _origin_options(origin)
    origin.add_argument("--fleet", help="the fleet in front of this origin: deleting a title purges it there")
    _ray_options(origin)
    _server_options(origin)
    _signing_options(origin)
    origin.set_defaults(handler=cmd_origin)

    edge = commands.add_parser(
        "edge", help="run one caching edge node in front of origins (or a parent edge)"
    )
    _tls_options(edge)
    _signing_options(edge)
    edge.add_argument("--upstream", action="append", help="origin URL; repeat for several (tried in turn)")
    edge.add_argument("--parent", help="a parent edge to fill from first (shield tier)")
    edge.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    edge.add_argument("--port", type=int, default=8081, help="port (default 8081; 0 picks a free one)")
    edge.add_argument("--advertise-url", help="URL players and sibling edges use (default http://HOST:PORT)")
    edge.add_argument("--public-host", help="host name for the advertised URL, with the bound port")
    edge.add_argument("--cache-mem", default="512MiB", help="memory cache size (default 512MiB)")
    edge.add_argument("--cache-dir", help="directory of the disk cache tier (off by default)")
    edge.add_argument("--cache-disk", help="disk cache size, e.g. 10GiB (needs --cache-dir)")
    edge.add_argument("--id", help="edge id for X-Served-By and /stats (default host-pid)")
    edge.add_argument("--prefetch", type=int, default=2, help="next segments to fill ahead (default 2)")
    edge.add_argument("--connect-timeout", type=float, default=2.0, help="upstream connect timeout, s")
    edge.add_argument("--read-timeout", type=float, default=10.0, help="upstream read timeout, s")
    edge.add_argument("--admin-token", help="token for PURGE (default: $SURGE_ADMIN_TOKEN)")
    edge.add_argument("--cors-origin", default="*", help="Allow-Origin of CORS preflights; '' disables")
    edge.add_argument("--no-access-log", action="store_true", help="no log line per request")
    edge.add_argument("--header-timeout", type=float, default=10.0, help="408 for slower request headers, s")
    edge.add_argument("--keepalive-timeout", type=float, default=75.0, help="close idle connections after, s")
    edge.add_argument(
        "--stale-grace",
        type=float,
        default=86_400.0,
        help="serve stale up to this long while upstreams fail, s",
    )
    _server_options(edge)
    edge.set_defaults(handler=cmd_edge)

    fleet = commands.add_parser("fleet", help="run the router and autoscaler that start and steer edges")
    fleet.add_argument("--origin", required=True, help="origin URL the edges fill from")
    _tls_options(fleet)
    fleet.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fleet.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    fleet.add_argument("--public-url", help="the fleet's URL as players see it (default http://HOST:PORT)")
    fleet.add_argument("--admin-token", help="token for POST /admin/purge, shared with its edges")
    _fleet_options(fleet)
    _server_options(fleet)
    fleet.set_defaults(handler=cmd_fleet)

    up = commands.add_parser("up", help="run origin + fleet (+ edges) together")
    _origin_options(up)
    _fleet_options(up)
    _server_options(up)
    up.add_argument("--fleet-port", type=int, default=8000, help="the fleet's port (default 8000)")
    up.set_defaults(handler=cmd_up)

    upload = commands.add_parser("upload", help="upload a video to an origin (admin client)")
    upload.add_argument("file", help="the video file")
    upload.add_argument(
        "--server", default="http://127.0.0.1:8080", help="origin URL (default http://127.0.0.1:8080)"
    )
    upload.add_argument("--name", help="human name of the title (default: the file name)")
    upload.add_argument("--token", help="admin token (default: $SURGE_ADMIN_TOKEN, else DATA/admin.token)")
    upload.add_argument("--data", default="./data", help="where to find admin.token (default ./data)")
    upload.add_argument(
        "--wait", action="store_true", help="follow packaging until ready (exit 1 if it fails)"
    )
    upload.add_argument("--quiet", action="store_true", help="no progress bars")
    upload.set_defaults(handler=cmd_upload)
    add_loadtest_parser(commands)
    add_config_option(commands.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_args(parser, _commands(parser), sys.argv[1:] if argv is None else argv, os.environ)
        return int(args.handler(args))
    except SurgeError as err:
        print(f"surge: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("surge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
