"""Process entry points: wiring from command-line arguments to running loops.

Each process installs uvloop when present, logs to stderr, and turns SIGTERM/SIGINT into a
graceful stop (stop reading, finish the work in hand, exit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sessiond.cli import preflight
from sessiond.core import logs, metrics
from sessiond.core.addresses import HostPort, media_address, reachable_host
from sessiond.core.errors import TableError
from sessiond.core.resources import bundled_table_paths
from sessiond.edge.access import AccessConfigError, AccessPolicy, load_users, parse_networks
from sessiond.edge.admission import Admission, AuthThrottle
from sessiond.edge.credentials import CredentialsError, CredentialStore, load_credentials
from sessiond.edge.registrar import RegistrarConfig
from sessiond.edge.registrar_client import OutboundConfig
from sessiond.edge.tls import TlsConfig, TlsContexts
from sessiond.sip.registrar import RegistrarPolicy
from sessiond.store import Keys, Store
from sessiond.store.client import connect
from sessiond.store.embedded import (
    STORE_HOST,
    StoreListener,
    open_listener,
    remove_state,
    write_state,
)
from sessiond.store.streams import cancel_and_wait
from sessiond.store.tableset import TableSet
from sessiond.table import Table, load_table
from sessiond.worker.applier import Applier
from sessiond.worker.handlers import CallHandler, RegisteredUsers, builtin, load_handler
from sessiond.worker.process import Worker, default_name
from sessiond.worker.routes import RoutesError, load_routes

# a host name or an IP address (a registrar domain)
DOMAIN = re.compile(r"[a-z0-9]([a-z0-9.\-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


def setup_logging(args: argparse.Namespace | None = None) -> None:
    """Log to stderr at INFO, as text or JSON (``--log-format``)."""
    logs.setup(getattr(args, "log_format", "text"))


def load_tables(paths: list[str]) -> list[Table] | None:
    try:
        return [load_table(p) for p in paths or [str(t) for t in bundled_table_paths()]]
    except TableError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    # What is loaded by now (modules, tables, routes) stays for the process's life: out of
    # the garbage collector's sight, its full collections no longer visit it (an edge under
    # load ran one every few hundred calls, each visiting these ~65,000 objects again).
    gc.freeze()
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def load_handler_option(args: argparse.Namespace, tables: list[Table]) -> CallHandler | None:
    """The signaling handler from ``--handler``/``--routes`` (``--answer`` otherwise); None
    after printing the problems (an import error, ``file:line`` messages of the routes)."""
    fallback = RegisteredUsers(builtin(args.answer))  # a registered user's phone rings
    try:
        if getattr(args, "handler", None):
            return load_handler(args.handler)
        if getattr(args, "routes", None):
            routes = load_routes(args.routes, fallback)
            problems = [p for table in tables[:1] for p in routes.check_table(table)]
            if problems:
                raise RoutesError(problems)
            return routes
    except RoutesError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    except ValueError as exc:
        print(f"sessiond: --handler: {exc}", file=sys.stderr)
        return None
    return fallback


def load_tables_and_handler(
    args: argparse.Namespace,
) -> tuple[list[Table], CallHandler] | None:
    """What a worker runs: the tables (``--table``) and the signaling handler; None after
    printing the problems (the caller exits 2)."""
    tables = load_tables(args.table)
    if tables is None:
        return None
    handler = load_handler_option(args, tables)
    return None if handler is None else (tables, handler)


def _handler_args(args: argparse.Namespace) -> list[str]:
    """``--handler``/``--routes`` again, for worker subprocesses."""
    if getattr(args, "handler", None):
        return ["--handler", args.handler]
    if getattr(args, "routes", None):
        return ["--routes", args.routes]
    return []


def access_policy(args: argparse.Namespace) -> AccessPolicy:
    """Allow list and digest users from the command line (AccessConfigError when invalid)."""
    users = None
    if args.auth_file:
        users = load_users(args.auth_file, args.auth_realm, args.auth_algorithm)
    secret = args.auth_secret.encode() if args.auth_secret else None
    try:
        throttle = AuthThrottle(args.auth_max_failures, args.auth_failure_window, args.auth_lockout)
    except ValueError as exc:
        flags = "--auth-max-failures/--auth-failure-window/--auth-lockout"
        raise AccessConfigError(f"{flags}: {exc}") from exc
    return AccessPolicy(
        parse_networks(args.allow),
        users,
        realm=args.auth_realm,
        algorithm=args.auth_algorithm,
        secret=secret,
        throttle=throttle,
    )


def admission(args: argparse.Namespace) -> Admission:
    """``--max-calls-per-source`` and ``--media-reserve`` (ValueError when negative)."""
    for flag, value in (
        ("--max-calls-per-source", args.max_calls_per_source),
        ("--media-reserve", args.media_reserve),
    ):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    return Admission(args.max_calls_per_source, reserve=args.media_reserve)


def outbound_config(args: argparse.Namespace, transports: set[str]) -> OutboundConfig:
    """``--register``/``--ping``/``--keepalive``/``--credentials`` (ValueError or
    CredentialsError, naming the option or the file and line, when invalid)."""
    credentials = load_credentials(args.credentials) if args.credentials else CredentialStore()
    config = OutboundConfig(
        tuple(args.register),
        args.register_expires,
        args.keepalive,
        tuple(args.ping),
        credentials,
    )
    config.check(transports)
    return config


def tls_contexts(args: argparse.Namespace, transports: set[str]) -> TlsContexts | None:
    """``--tls-cert``/``--tls-key``/``--tls-ca``/``--tls-verify-client`` loaded (TlsConfigError,
    naming the flag and the file, when unusable); None without any of them."""
    config = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca, args.tls_verify_client)
    config.check("TLS" in transports)
    return TlsContexts(config) if config.files() else None


def watch_tls(edge: Any) -> None:
    """SIGHUP reloads the edge's TLS certificate (when it has one)."""
    if edge.tls is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, edge.tls.reload)


def registrar_config(args: argparse.Namespace) -> RegistrarConfig | None:
    """``--registrar`` and its bounds (ValueError naming the flag when invalid)."""
    if not args.registrar:
        return None
    domains = [d.strip().lower() for d in args.registrar.split(",") if d.strip()]
    bad = [d for d in domains if not DOMAIN.fullmatch(d)]
    if not domains or bad:
        raise ValueError(f"--registrar: {args.registrar!r} is not DOMAIN[,DOMAIN]")
    low, high = args.registrar_min_expires, args.registrar_max_expires
    if low < 1 or high < low:
        raise ValueError("--registrar-min-expires must be >= 1 and --registrar-max-expires >= it")
    if args.registrar_max_contacts < 1:
        raise ValueError("--registrar-max-contacts must be >= 1")
    policy = RegistrarPolicy(
        frozenset(domains),
        min_expires=low,
        max_expires=high,
        default_expires=high,
        max_contacts=args.registrar_max_contacts,
    )
    algorithms = tuple(a.strip().upper() for a in args.registrar_algorithms.split(","))
    if (
        not algorithms
        or len(set(algorithms)) != len(algorithms)
        or not set(algorithms)
        <= {
            "MD5",
            "SHA-256",
        }
    ):
        raise ValueError(
            f"--registrar-algorithms: {args.registrar_algorithms!r} is not MD5, SHA-256 "
            "or both, comma-separated"
        )
    secret = args.auth_secret.encode() if args.auth_secret else b""
    return RegistrarConfig(policy, algorithms=algorithms, secret=secret)


def edge_options(args: argparse.Namespace, transports: set[str]) -> dict[str, Any]:
    """The Edge keyword arguments that come straight from the command line."""
    return {
        "tls": tls_contexts(args, transports),
        "registrar": registrar_config(args),
        "outbound": outbound_config(args, transports),
        "access": access_policy(args),
        "admission": admission(args),
        "shed_lag": args.shed_lag,
        "shed_delay": args.shed_delay,
        "tcp_idle_timeout": args.tcp_idle_timeout,
        "tcp_message_timeout": args.tcp_message_timeout,
        "max_connections": args.max_connections,
        "max_transactions": args.max_transactions,
    }


def listeners(args: argparse.Namespace) -> tuple[list[Any], list[HostPort | None]]:
    """``--listen`` and ``--advertise``: the listen specs and, for each, the address to
    advertise (None: its own). One ``--advertise`` applies to every listener; several pair
    with the ``--listen`` options in order (``-`` for a listener's own address). With
    ``--advertise`` and no ``--listen``, udp:0.0.0.0:5060. ValueError naming the flag."""
    from sessiond.edge.transport import ListenSpec

    given = list(args.advertise)
    default = "udp:0.0.0.0:5060" if given else "udp:127.0.0.1:5060"
    specs = [ListenSpec.parse(text) for text in args.listen or [default]]
    if len(given) not in (0, 1, len(specs)):
        raise ValueError(
            f"--advertise: give one for every --listen or one per --listen ({len(specs)}), "
            f"not {len(given)}"
        )
    advertise = [None if text == "-" else HostPort.parse(text) for text in given]
    if len(advertise) == 1:
        advertise *= len(specs)
    return specs, advertise


def media_addresses(args: argparse.Namespace, advertise: list[HostPort | None]) -> tuple[str, str]:
    """``sessiond run``'s RTP (bind, SDP) addresses: ``--address`` (default 127.0.0.1, or
    0.0.0.0 when something is advertised) and ``--media-advertise``, else the first
    advertised host, else the bound address (the default route's for a wildcard)."""
    first = next((a for a in advertise if a is not None), None)
    bind = args.address or ("0.0.0.0" if first is not None else "127.0.0.1")
    if args.media_advertise:
        return bind, media_address(args.media_advertise, "--media-advertise")
    if first is None:
        return bind, reachable_host(bind, None)
    try:
        return bind, media_address(first.host, "--advertise")
    except ValueError as exc:
        raise ValueError(f"{exc}; give --media-advertise IP for the SDP") from None


def run_edge(args: argparse.Namespace) -> int:
    from sessiond.edge.process import Edge

    setup_logging(args)
    try:
        specs, advertise = listeners(args)
        edge_kwargs = edge_options(args, {spec.transport for spec in specs})
    except (ValueError, AccessConfigError, CredentialsError) as exc:
        print(f"sessiond edge: {exc}", file=sys.stderr)
        return 2
    problem = start_problem(args, specs)
    if problem:
        return preflight.fail("sessiond edge", problem)
    metrics.serve(args.metrics_port)

    async def main() -> int:
        redis = connect(args.redis)
        edge = Edge(
            redis,
            Keys(args.namespace, partitions=args.partitions),
            args.name or default_name("edge"),
            specs,
            rate_limit=args.rate_limit,
            rate_burst=args.rate_burst,
            advertise=advertise,
            **edge_kwargs,
        )
        on_signals(edge.stop)
        watch_tls(edge)
        await edge.run()
        await redis.aclose()
        return 0

    return _run_or_fail("sessiond edge", main)


def run_worker(args: argparse.Namespace) -> int:
    setup_logging(args)
    loaded = load_tables_and_handler(args)
    if loaded is None:
        return 2
    tables, handler = loaded
    problem = start_problem(args, [])
    if problem:
        return preflight.fail("sessiond worker", problem)

    metrics.serve(args.metrics_port)

    async def main() -> int:
        redis = connect(args.redis)
        keys = Keys(args.namespace, partitions=args.partitions)
        workers = []
        for n in range(args.concurrency):
            store = Store(redis, keys, worker=args.name or "")
            applier = Applier(store, TableSet(tables, redis, keys))
            name = f"{args.name}-{n}" if args.name and args.concurrency > 1 else args.name
            workers.append(Worker(applier, name=name, answer=args.answer, handler=handler))
        for w in workers:
            w.store.worker = w.name

        def stop() -> None:
            for w in workers:
                w.stop()

        on_signals(stop)
        await asyncio.gather(*(w.run() for w in workers))
        await redis.aclose()
        return 0

    return run_async(main)


def run_all(args: argparse.Namespace) -> int:
    """``sessiond run``: edge, workers and a media node in one command.

    Without ``--redis`` everything runs in this process on the embedded store: nothing else to
    install. With ``--redis`` the workers and the media node are processes of their own (they
    use other cores than the edge's) and this process runs the edge."""
    from sessiond.media.ports import parse_range

    setup_logging(args)
    loaded = load_tables_and_handler(args)
    if loaded is None:
        return 2
    tables, handler = loaded
    try:
        specs, advertise = listeners(args)
        args.address, args.media_advertise = media_addresses(args, advertise)
        rtp_range = parse_range(args.rtp_ports)
        edge_kwargs = edge_options(args, {spec.transport for spec in specs})
        edge_kwargs["advertise"] = advertise
    except (ValueError, AccessConfigError, CredentialsError) as exc:
        print(f"sessiond run: {exc}", file=sys.stderr)
        return 2
    problem = start_problem(args, specs, rtp_address=args.address)
    if problem:
        return preflight.fail("sessiond run", problem)
    listener = None
    if not args.redis and args.store_port != preflight.STORE_OFF:
        try:
            listener = open_listener(args.store_port)
        except OSError as exc:
            where = f"{STORE_HOST}:{args.store_port}"
            return preflight.fail("sessiond run", f"--store-port: cannot listen on {where}: {exc}")
    metrics.serve(args.metrics_port)
    state = _announce_store(args, listener)
    try:
        return _run_or_fail(
            "sessiond run", lambda: _run_all(args, specs, rtp_range, edge_kwargs, tables, handler)
        )
    finally:
        remove_state(state)
        if listener is not None:
            listener.close()


def _run_all(
    args: argparse.Namespace,
    specs: list[Any],
    rtp_range: tuple[int, int],
    edge_kwargs: dict[str, Any],
    tables: list[Table],
    handler: CallHandler,
) -> Coroutine[Any, Any, int]:
    """The coroutine of ``sessiond run`` (checked arguments in hand)."""
    from sessiond.edge.process import Edge
    from sessiond.media.node import MediaNode, available_codecs
    from sessiond.media.ports import PortAllocator
    from sessiond.media.sdes_sdp import SrtpPolicy

    first, last = rtp_range

    async def main() -> int:
        redis = connect(args.redis)
        keys = Keys(args.namespace, partitions=args.partitions)
        base = default_name("run")
        edge = Edge(
            redis,
            keys,
            f"{base}-edge",
            specs,
            rate_limit=args.rate_limit,
            rate_burst=args.rate_burst,
            **edge_kwargs,
        )
        workers: list[Worker] = []
        children = [*_spawn_workers(args, base), _spawn_media(args, base)] if args.redis else []
        for n in range(0 if children else args.workers):
            store = Store(redis, keys, worker=f"{base}-w{n}")
            applier = Applier(store, TableSet(tables, redis, keys))
            workers.append(
                Worker(applier, name=f"{base}-w{n}", answer=args.answer, handler=handler)
            )
        executor_args = {
            "sdp_address": args.media_advertise,
            "codecs": available_codecs(),
            "inactivity_timeout": args.rtp_timeout or None,
            "files_dir": None,
            "srtp": SrtpPolicy(args.srtp),
        }
        media = None
        if not children:
            ports = PortAllocator(args.address, first, last)
            media = MediaNode(
                redis,
                keys,
                executor_args,
                name=f"{base}-media",
                ports=ports,
                drain_timeout=5.0,
                idle_rtp=args.idle_rtp,
                idle_keepalive=args.idle_keepalive,
            )

        def stop() -> None:
            edge.stop()
            if media is not None:
                media.stop()
                media.stop()  # second call: do not wait for legs
            for w in workers:
                w.stop()

        on_signals(stop)
        watch_tls(edge)
        store_name = args.redis or "the embedded store"
        logging.getLogger("sessiond").info(
            "sessiond run: %d worker(s), answer=%s, on %s", args.workers, args.answer, store_name
        )
        try:
            nodes = [media.run()] if media is not None else []
            await _all_or_stop([edge.run(), *nodes, *(w.run() for w in workers)], stop)
        finally:
            _stop_children(children)
        await redis.aclose()
        return 0

    return main()


def start_problem(
    args: argparse.Namespace, specs: list[Any], rtp_address: str | None = None
) -> str | None:
    """The first reason this process cannot start (a Redis URL, an address it cannot bind),
    checked before anything starts; None when there is none."""
    return preflight.first_problem(
        [
            preflight.redis_problem("--redis", args.redis),
            *(
                preflight.bind_problem("--listen", spec.transport, spec.host, spec.port)
                for spec in specs
            ),
            preflight.metrics_problem(args.metrics_port),
            preflight.bind_problem("--address", "UDP", rtp_address, 0) if rtp_address else None,
        ]
    )


def _announce_store(args: argparse.Namespace, listener: StoreListener | None) -> Path | None:
    """Say where the embedded store can be read, and leave it in the state file that
    ``sessiond ctl`` finds it by."""
    if listener is None:
        return None
    state = write_state(
        {"redis": listener.url, "namespace": args.namespace, "partitions": args.partitions}
    )
    logging.getLogger("sessiond").info(
        "embedded store on %s: redis-cli -p %d, or sessiond ctl%s",
        listener.url,
        listener.port,
        "" if state else f" --redis {listener.url}",
    )
    return state


def _run_or_fail(prog: str, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main``; a listener that cannot be bound after all (taken since the check) ends
    the process with one line, not a traceback."""
    try:
        return run_async(main)
    except OSError as exc:
        return preflight.fail(prog, f"--listen: {preflight.bind_failure(exc)}")


async def _all_or_stop(parts: list[Coroutine[Any, Any, None]], stop: Callable[[], None]) -> None:
    """Run the parts of a process together. When one fails, the others are asked to stop
    and awaited, then the failure propagates (a plain gather would leave them running)."""
    tasks = [asyncio.ensure_future(part) for part in parts]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        stop()
        await asyncio.wait(tasks, timeout=30)
        await cancel_and_wait([t for t in tasks if not t.done()])
        raise


def _child(args: argparse.Namespace, kind: str, *extra: str) -> list[str]:
    """The command line of a ``sessiond <kind>`` child on this run's Redis and namespace."""
    common = ["--redis", args.redis, "--namespace", args.namespace]
    common += ["--log-format", getattr(args, "log_format", "text")]
    return [
        sys.executable,
        "-m",
        "sessiond",
        kind,
        *common,
        "--partitions",
        str(args.partitions),
        *extra,
    ]


def _spawn_workers(args: argparse.Namespace, base: str) -> list[subprocess.Popen[bytes]]:
    """With a Redis server, workers run as processes of their own (they scale across cores;
    the embedded store lives in this process, so there they run in-process)."""
    tables = [arg for table in args.table for arg in ("--table", table)]
    command = _child(args, "worker", "--answer", args.answer, *_handler_args(args), *tables)
    return [subprocess.Popen([*command, "--name", f"{base}-w{n}"]) for n in range(args.workers)]


def _spawn_media(args: argparse.Namespace, base: str) -> subprocess.Popen[bytes]:
    """The media node as a process of its own (with a Redis server)."""
    rtp = ["--rtp-ports", args.rtp_ports, "--address", args.address]
    rtp += ["--advertise", args.media_advertise]
    limits = ["--rtp-timeout", str(args.rtp_timeout), "--drain-timeout", "5"]
    rtp += ["--srtp", args.srtp, "--idle-rtp", args.idle_rtp]
    rtp += ["--idle-keepalive", str(args.idle_keepalive)]
    return subprocess.Popen(_child(args, "media", *rtp, *limits, "--name", f"{base}-media"))


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=35)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
