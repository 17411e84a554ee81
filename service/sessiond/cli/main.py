"""The ``sessiond`` command line: one entry point for every process and tool."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sessiond.cli.preflight import (
    Parser,
    at_least_one,
    nonneg_float,
    nonneg_int,
    port_number,
    positive_float,
    positive_int,
    store_port,
)
from sessiond.core import logs
from sessiond.core.errors import TableError
from sessiond.media.sdes_sdp import SRTP_HELP, SrtpPolicy
from sessiond.table import load_table
from sessiond.table.graph import dot, mermaid


def _table_check(args: argparse.Namespace) -> int:
    failed = 0
    for i, path in enumerate(args.files):
        try:
            table = load_table(path)
        except TableError as exc:
            failed += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        if args.expanded:  # YAML that loads as it is: documents apart, no other output
            sys.stdout.write(("---\n" if i else "") + table.source)
            continue
        print(
            f"{path}: ok (table {table.name} v{table.version}, rev {table.rev}, "
            f"{len(table.states)} states, {len(table.entries)} entries)"
        )
    return 1 if failed else 0


def _table_graph(args: argparse.Namespace) -> int:
    try:
        table = load_table(args.file)
    except TableError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    sys.stdout.write(mermaid(table) if args.format == "mermaid" else dot(table))
    return 0


def _run(args: argparse.Namespace) -> int:
    from sessiond.cli import processes

    return processes.run_all(args)


def _edge(args: argparse.Namespace) -> int:
    from sessiond.cli import processes

    return processes.run_edge(args)


def _worker(args: argparse.Namespace) -> int:
    from sessiond.cli import processes

    return processes.run_worker(args)


def _ctl(args: argparse.Namespace) -> int:
    from sessiond.cli.ctl import ctl

    return asyncio.run(ctl(args))


def _store_options(parser: argparse.ArgumentParser, *, redis_required: bool) -> None:
    if redis_required:
        parser.add_argument("--redis", required=True, help="Redis URL")
    else:
        parser.add_argument("--redis", default=None, help="Redis URL (default: embedded store)")
    parser.add_argument(
        "--partitions", type=positive_int, default=16, help="event stream partitions"
    )
    parser.add_argument("--namespace", default="sessiond", help="Redis key prefix")
    parser.add_argument(
        "--metrics-port", type=port_number, default=0, help="serve Prometheus metrics"
    )
    logs.add_option(parser)


def _edge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        help="udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT (repeatable; default "
        "udp:127.0.0.1:5060, or udp:0.0.0.0:5060 with --advertise); HOST may be 0.0.0.0 or "
        "[::] (every address)",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="PEM certificate chain of the tls: listeners (reloaded on SIGHUP or change)",
    )
    parser.add_argument(
        "--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert"
    )
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help="PEM CA bundle that TLS servers we call must chain to (default: the system's), "
        "and clients with --tls-verify-client",
    )
    parser.add_argument(
        "--tls-verify-client",
        action="store_true",
        help="tls: listeners require a client certificate signed by --tls-ca",
    )
    parser.add_argument(
        "--advertise",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="the address peers reach us at (a NAT's public address), written in Via, Contact "
        "and every header instead of the bound one: once for every --listen, or once per "
        "--listen in the same order ('-': that listener's own address); without PORT, the "
        "listener's port",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_float,
        default=50.0,
        help="new requests/s admitted per source address (then 503)",
    )
    parser.add_argument("--rate-burst", type=at_least_one, default=100.0)
    parser.add_argument(
        "--shed-lag",
        type=nonneg_int,
        default=5000,
        help="refuse new calls (503) while this many events wait for workers",
    )
    parser.add_argument(
        "--shed-delay",
        type=positive_float,
        default=1.0,
        help="refuse new calls while events wait this long to reach Redis",
    )
    parser.add_argument("--tcp-idle-timeout", type=positive_float, default=300.0)
    parser.add_argument(
        "--tcp-message-timeout",
        type=positive_float,
        default=32.0,
        help="close a TCP connection holding a partial message this long",
    )
    parser.add_argument("--max-connections", type=positive_int, default=10_000)
    parser.add_argument(
        "--max-transactions",
        type=int,
        default=100_000,
        help="answer new requests 503 while this many server transactions are open",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        help="only these sources (CIDR, repeatable) may start calls",
    )
    parser.add_argument(
        "--auth-file",
        default=None,
        help="require digest auth for INVITE/REGISTER; lines user:password",
    )
    parser.add_argument(
        "--max-calls-per-source",
        type=int,
        default=None,
        metavar="N",
        help="calls (live or pending) one source address may hold, then 503 + Retry-After; "
        "0: no limit (default: a third of the media nodes' legs, 250 until they report)",
    )
    parser.add_argument(
        "--media-reserve",
        type=int,
        default=None,
        metavar="LEGS",
        help="refuse new calls (503) while the media nodes have this many free legs or fewer "
        "(default: 2%% of their legs, at least 2; 0: never)",
    )
    parser.add_argument(
        "--auth-max-failures",
        type=int,
        default=10,
        help="wrong digest answers from one source within --auth-failure-window before it "
        "is locked out",
    )
    parser.add_argument("--auth-failure-window", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--auth-lockout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a locked-out source gets 403 for every INVITE/REGISTER this long",
    )
    parser.add_argument("--auth-realm", default="sessiond")
    parser.add_argument("--auth-algorithm", choices=["MD5", "SHA-256"], default="MD5")
    parser.add_argument(
        "--auth-secret",
        default=None,
        help="nonce secret shared by edges behind one address (default: random)",
    )
    parser.add_argument(
        "--registrar",
        default=None,
        metavar="DOMAIN[,DOMAIN]",
        help="be the registrar of these domains: REGISTERs to their users are answered here "
        "(digest against `sessiond ctl user` accounts, bindings in Redis); without it "
        "REGISTER gets 405",
    )
    parser.add_argument(
        "--registrar-algorithms",
        default="MD5",
        metavar="ALG[,ALG]",
        help="digest challenges a REGISTER gets, in order of preference: MD5, SHA-256 or "
        "both (RFC 8760; some older UAs fail on a SHA-256 challenge, hence MD5 alone by "
        "default); answers in either are checked",
    )
    parser.add_argument(
        "--registrar-min-expires",
        type=int,
        default=60,
        metavar="SECONDS",
        help="shorter registrations get 423 with this Min-Expires",
    )
    parser.add_argument(
        "--registrar-max-expires",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="longer registrations are granted this (also the default)",
    )
    parser.add_argument(
        "--registrar-max-contacts",
        type=int,
        default=10,
        metavar="N",
        help="bindings one address-of-record may hold (then 403)",
    )
    parser.add_argument(
        "--register",
        action="append",
        default=[],
        metavar="AOR",
        help="register this address-of-record (sip:user@registrar[:port]) with the edge's "
        "address as Contact; refreshed before expiry, removed on stop (repeatable)",
    )
    parser.add_argument(
        "--register-expires", type=int, default=3600, help="expiry to ask the registrar for"
    )
    parser.add_argument(
        "--credentials",
        default=None,
        metavar="FILE",
        help="our accounts for challenges to REGISTER and INVITE; lines: "
        "user=NAME password=SECRET [realm=REALM]",
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="send OPTIONS to each registrar (and --ping target) this often (0: only --ping, "
        "every 30 s)",
    )
    parser.add_argument(
        "--ping",
        action="append",
        default=[],
        metavar="URI",
        help="also send OPTIONS keepalives to this SIP URI (repeatable)",
    )


def _worker_options(parser: argparse.ArgumentParser, *, answer: str) -> None:
    parser.add_argument(
        "--answer",
        choices=["auto", "reject", "app"],
        default=answer,
        help="a new incoming call: answer it, reject it, or ask the application",
    )
    decide = parser.add_mutually_exclusive_group()
    decide.add_argument(
        "--handler",
        default=None,
        help="a custom signaling handler class, package.module:ClassName (replaces --answer)",
    )
    decide.add_argument(
        "--routes",
        default=None,
        help="a YAML routing file (rules on To/From/headers; its default, else --answer)",
    )
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        help="state table file (repeatable; default: the bundled default and gateway tables)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sessiond", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    table = sub.add_parser("table", help="check or draw state tables")
    tsub = table.add_subparsers(dest="table_command", required=True)
    check = tsub.add_parser("check", help="validate tables; exit 1 with file:line messages")
    check.add_argument("files", nargs="+")
    check.add_argument(
        "--expanded",
        action="store_true",
        help="print each table with its include: files merged in (the YAML its revision names)",
    )
    check.set_defaults(func=_table_check)
    graph = tsub.add_parser("graph", help="draw a table")
    graph.add_argument("file")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.set_defaults(func=_table_graph)

    worker = sub.add_parser("worker", help="apply events from the Redis streams (stateless)")
    _store_options(worker, redis_required=True)
    worker.add_argument(
        "--concurrency", type=positive_int, default=1, help="reader loops in this process"
    )
    _worker_options(worker, answer="app")
    worker.add_argument("--name", default=None)
    worker.set_defaults(func=_worker)

    from sessiond.cli.ctl import add_parser as add_ctl

    add_ctl(sub)
    sub.choices["ctl"].set_defaults(func=_ctl)

    run = sub.add_parser("run", help="edge, workers and media in one command")
    _store_options(run, redis_required=False)
    _edge_options(run)
    _worker_options(run, answer="auto")
    run.add_argument("--workers", type=positive_int, default=1)
    run.add_argument("--rtp-ports", default="20000-20999")
    run.add_argument(
        "--address",
        default=None,
        help="RTP bind address (default 127.0.0.1, or 0.0.0.0 with --advertise)",
    )
    run.add_argument(
        "--media-advertise",
        default=None,
        metavar="ADDR",
        help="the address in our SDP (c=, o=) (default: the --advertise host, else --address)",
    )
    run.add_argument("--rtp-timeout", type=nonneg_float, default=30.0)
    run.add_argument("--srtp", choices=[p.value for p in SrtpPolicy], default="off", help=SRTP_HELP)
    from sessiond.cli.media import add_idle_options

    add_idle_options(run)
    run.add_argument(
        "--store-port",
        type=store_port,
        default=None,
        help="without --redis: serve the embedded store to redis-cli and sessiond ctl on "
        "127.0.0.1:PORT (default 6380, or any free port when 6380 is taken; 0: any free "
        "port; off: not at all)",
    )
    run.set_defaults(func=_run)

    from sessiond.cli.media import add_parser as add_media

    add_media(sub)

    edge = sub.add_parser("edge", help="the SIP edge: sockets and transactions")
    _store_options(edge, redis_required=True)
    _edge_options(edge)
    edge.add_argument("--name", default=None, help="edge name (commands are addressed to it)")
    edge.set_defaults(func=_edge)

    from sessiond.cli.bench.command import add_parser as add_bench

    add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
