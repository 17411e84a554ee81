"""``sessiond media``: the command line of the media process.

sessiond media --redis URL --rtp-ports 20000-20999 --address 127.0.0.1
               [--name NAME] [--metrics-port N] [--advertise ADDR] [--rtp-timeout S]
               [--drain-timeout S] [--files-dir DIR] [--partitions N] [--namespace NS]
               [--srtp off|offer|require] [--idle-rtp send|keepalive] [--idle-keepalive S]
"""

from __future__ import annotations

import argparse
from typing import Any

from sessiond.cli import preflight
from sessiond.cli.processes import on_signals, run_async, setup_logging, start_problem
from sessiond.core import logs
from sessiond.core.addresses import media_address, reachable_host
from sessiond.core.metrics import serve
from sessiond.media.node import MediaNode, available_codecs
from sessiond.media.ports import PortAllocator, parse_range
from sessiond.media.sdes_sdp import SRTP_HELP, SrtpPolicy
from sessiond.media.ticker import DEFAULT_KEEPALIVE, IDLE_RTP, IDLE_RTP_HELP
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.worker.process import default_name


def run_media(args: argparse.Namespace) -> int:
    """Run one media node until SIGTERM (drain) or a drain request."""
    setup_logging(args)
    try:
        first, last = parse_range(args.rtp_ports)
        ports = PortAllocator(args.address, first, last)
    except ValueError as exc:
        return preflight.fail("sessiond media", f"--rtp-ports: {exc}")
    problem = start_problem(args, [], rtp_address=args.address)
    if problem:
        return preflight.fail("sessiond media", problem)
    try:
        shown = media_address(args.advertise, "--advertise") if args.advertise else None
    except ValueError as exc:
        return preflight.fail("sessiond media", str(exc))
    sdp_address = shown or reachable_host(args.address, None)

    async def main() -> int:
        redis = connect(args.redis)
        keys = Keys(args.namespace, partitions=args.partitions)
        executor_args = {
            "sdp_address": sdp_address,
            "codecs": available_codecs(),
            "inactivity_timeout": args.rtp_timeout or None,
            "files_dir": args.files_dir,
            "srtp": SrtpPolicy(args.srtp),
        }
        node = MediaNode(
            redis,
            keys,
            executor_args,
            name=args.name or default_name("media"),
            ports=ports,
            drain_timeout=args.drain_timeout,
            idle_rtp=args.idle_rtp,
            idle_keepalive=args.idle_keepalive,
        )
        if args.metrics_port:
            serve(args.metrics_port)
        on_signals(node.stop)
        try:
            await node.run()
        finally:
            await redis.aclose()
        return 0

    return run_async(main)


def add_idle_options(parser: Any) -> None:
    """``--idle-rtp`` and ``--idle-keepalive`` (``sessiond media`` and ``sessiond run``)."""
    parser.add_argument("--idle-rtp", choices=IDLE_RTP, default="send", help=IDLE_RTP_HELP)
    parser.add_argument(
        "--idle-keepalive",
        type=preflight.positive_float,
        default=DEFAULT_KEEPALIVE,
        metavar="S",
        help="with --idle-rtp keepalive: seconds between two silence packets of an idle leg "
        f"(default {DEFAULT_KEEPALIVE:g}; below the far end's RTP timeout and NAT binding)",
    )


def add_parser(sub: Any) -> None:
    """Register ``media`` on an argparse subparsers object (sets ``func``)."""
    media = sub.add_parser("media", help="run a media node (RTP, codecs, play, record, DTMF)")
    media.add_argument("--redis", required=True, help="Redis URL, or 'embedded'")
    media.add_argument("--rtp-ports", required=True, help="UDP port range, e.g. 20000-20999")
    media.add_argument(
        "--address", required=True, help="IP address to bind RTP sockets to (0.0.0.0: all)"
    )
    media.add_argument(
        "--advertise",
        "--sdp-address",
        default=None,
        metavar="ADDR",
        help="the address peers send RTP to, put in our SDP c=/o= (a NAT's public address; "
        "default: --address, or the default route's address when that is 0.0.0.0)",
    )
    media.add_argument("--name", default=None, help="node name (default: media-HOST-PID)")
    media.add_argument(
        "--metrics-port", type=preflight.port_number, default=0, help="serve /metrics here"
    )
    media.add_argument(
        "--rtp-timeout",
        type=preflight.nonneg_float,
        default=30.0,
        help="RtpTimeout after this many s without RTP (0: off)",
    )
    media.add_argument(
        "--drain-timeout",
        type=preflight.nonneg_float,
        default=300.0,
        help="longest wait for legs when draining",
    )
    media.add_argument("--files-dir", default=None, help="play/record paths must be inside")
    media.add_argument(
        "--srtp", choices=[p.value for p in SrtpPolicy], default="off", help=SRTP_HELP
    )
    add_idle_options(media)
    media.add_argument(
        "--partitions", type=preflight.positive_int, default=16, help="event stream partitions"
    )
    media.add_argument("--namespace", default="sessiond", help="Redis key prefix")
    logs.add_option(media)
    media.set_defaults(func=run_media)
