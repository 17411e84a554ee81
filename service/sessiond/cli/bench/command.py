"""``sessiond bench BENCH``: one subcommand per bench, each with its own options and help.

The options several benches take (``--redis``, ``--seconds``, ``--rates``, ``--calls``...)
are defined once here and added to each bench that takes them; an option a bench does not
take is refused in one line naming it (and the benches that do take it), exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sessiond.cli.preflight import Parser, positive_float, positive_int
from sessiond.media.ticker import IDLE_RTP

BENCH_REDIS = "redis://127.0.0.1:6379/15"


class BenchParser(Parser):
    """One bench's parser: what it does not take is its own one-line error (by default
    argparse hands it up to ``sessiond``, whose message would name neither the bench nor
    where the option belongs)."""

    #: option -> benches that take it (filled as the benches are added)
    owners: dict[str, list[str]] = {}

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.unrecognized(extras)
        return parsed, extras

    def unrecognized(self, extras: list[str]) -> NoReturn:
        flags = [e.split("=", 1)[0] for e in extras]
        flags = [f for f in flags if f in self.owners]
        where = [f"{f} is an option of bench {', '.join(self.owners[f])}" for f in flags]
        hint = "; ".join(where) + "; " if where else ""
        self.exit(
            2,
            f"{self.prog}: unrecognized arguments: {' '.join(extras)} "
            f"({hint}see {self.prog} --help)\n",
        )


Bench = Callable[[argparse.Namespace], int]


def _rates(text: str, default: Sequence[int]) -> list[int] | None:
    """``--rates`` as positive integers (``default`` when empty); None after an error line."""
    try:
        rates = [int(r) for r in text.split(",")] if text else list(default)
    except ValueError:
        rates = []
    if not rates or min(rates) <= 0:
        print(f"sessiond bench: --rates: expected positive integers, got {text!r}", file=sys.stderr)
        return None
    return rates


# -- the options several benches share, defined once -------------------------------------


def redis_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        default=BENCH_REDIS,
        help=f"Redis URL, or 'embedded' for the in-process store (default {BENCH_REDIS})",
    )


def seconds_option(parser: argparse.ArgumentParser, what: str = "how long to run") -> None:
    parser.add_argument("--seconds", type=positive_float, default=5.0, help=f"{what} (default 5)")


def rates_option(parser: argparse.ArgumentParser, unit: str, default: Sequence[int]) -> None:
    steps = ",".join(str(r) for r in default)
    parser.add_argument(
        "--rates",
        default="",
        metavar="R[,R...]",
        help=f"comma-separated {unit} steps, run in order until one fails (default {steps})",
    )


def calls_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--calls", type=int, default=1000, help=f"{what} (default 1000)")


def rate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=int, default=100, help="calls/s (default 100)")


def rounds_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rounds", type=positive_int, default=2, help=f"{what} (default 2)")


def idle_rtp_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--idle-rtp", default="", metavar="POLICY[,POLICY]", help=what)


# -- the benches ---------------------------------------------------------------------------


def _transitions(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.transitions import transitions

    return asyncio.run(transitions(args.redis, args.seconds, args.batch))


def _media(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.media import bench_media

    return bench_media(args.seconds)


def _mixer(args: argparse.Namespace) -> int:
    from sessiond.cli.bench import mixer

    return mixer.main(args.seconds)


def _conference(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.conference import bench_conference

    return bench_conference(args.seconds, args.members, args.talkers)


def _sip(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.sip import bench_sip

    return bench_sip(args.redis, args.seconds, args.calls, args.rate)


def _cps(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.cps import DEFAULT_RATES, cps

    rates = _rates(args.rates, DEFAULT_RATES)
    if rates is None:
        return 2
    return cps(args.redis, args.workers or [1, 2], rates, args.seconds, args.worker_cpu)


def _register(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.register import DEFAULT_RATES, bench_register

    rates = _rates(args.rates, DEFAULT_RATES)
    return 2 if rates is None else bench_register(rates, args.seconds)


def _peers(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.peers import DEFAULT_RATES, peers

    rates = _rates(args.rates, DEFAULT_RATES)
    if rates is None:
        return 2
    return peers(
        args.systems,
        rates,
        args.seconds,
        args.rounds,
        args.hold,
        args.install,
        idle_rtp=args.idle_rtp,
    )


def _memory(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.memory import memory

    return memory(args.calls, args.rate, idle_rtp=args.idle_rtp, overflow=args.overflow)


def _idle(args: argparse.Namespace) -> int:
    from sessiond.cli.bench.idle import bench_idle

    return bench_idle([args.calls], args.seconds, args.rounds, args.idle_rtp)


# the default --rates of the stepped benches (the bench modules' DEFAULT_RATES; here so that
# building the parser imports none of them)
CPS_RATES = (50, 100, 200, 300, 400, 600, 800, 1000, 1200)
PEERS_RATES = (50, 100, 150, 200, 300, 400, 600, 800, 1000, 1200, 1400)
REGISTER_RATES = (200, 400, 800, 1200)


def add_parser(sub: Any) -> None:
    """``sessiond bench`` and one subcommand per bench under it."""
    bench = sub.add_parser(
        "bench",
        help="measure throughput (sessiond bench BENCH --help: its options)",
        description="Speed figures, printed and never asserted in tests. "
        "Each bench has its own options: sessiond bench BENCH --help.",
    )
    benches = bench.add_subparsers(
        dest="what", required=True, metavar="BENCH", parser_class=BenchParser
    )

    def add(name: str, run: Bench, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = benches.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run)
        return parser

    p = add("transitions", _transitions, "transitions/s: transition.lua alone and the full path")
    redis_option(p)
    seconds_option(p, "how long each measurement runs")
    p.add_argument("--batch", type=int, default=64, help="sessions per pipeline round (default 64)")

    p = add("cps", _cps, "calls/s: sipp against `sessiond run --redis`, stepped by --rates")
    redis_option(p)
    seconds_option(p, "how long each step runs")
    rates_option(p, "calls/s", CPS_RATES)
    p.add_argument(
        "--workers",
        type=int,
        action="append",
        default=[],
        help="worker counts to measure (repeatable; default 1 and 2)",
    )
    p.add_argument(
        "--worker-cpu",
        type=float,
        default=None,
        metavar="FRACTION",
        help="cap each worker process at this fraction of a core (a cgroup; needs root), "
        "so the workers are the bottleneck and scaling them out shows",
    )

    p = add("sip", _sip, "SIP parse+serialize/s, and CPU per call of edge, worker and media")
    redis_option(p)
    seconds_option(p, "how long the parse+serialize measurement runs")
    calls_option(p, "calls for the CPU figure")
    rate_option(p)

    p = add("media", _media, "G.711 RTP one media process relays: CPU only, then real sockets")
    seconds_option(p, "how long to run, split across the steps")

    p = add("mixer", _mixer, "conference mixing on one core, for rooms of a few sizes")
    seconds_option(p, "how long to run, split across the room sizes")

    p = add("conference", _conference, "rooms x members one media process mixes in real time")
    seconds_option(p, "how long to run, split across the steps")
    p.add_argument("--members", type=positive_int, default=5, help="members per room (default 5)")
    p.add_argument(
        "--talkers", type=int, default=3, help="members per room sending a tone (default 3)"
    )

    p = add("peers", _peers, "sessiond side by side with Kamailio and sippy, stepped by --rates")
    seconds_option(p, "how long each step runs")
    rates_option(p, "calls/s", PEERS_RATES)
    p.add_argument(
        "--systems",
        default="",
        help="comma-separated, of kamailio, kamailio-redis, sippy, sessiond-forward, "
        "sessiond-bypass, sessiond-answer (default: all)",
    )
    rounds_option(p, "rounds of steps")
    p.add_argument(
        "--hold", type=positive_float, default=1.0, help="seconds each call is held (default 1)"
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="install what the systems need first (apt kamailio, kamailio-redis-modules; "
        "pip sippy)",
    )
    p.add_argument(
        "--idle-rtp",
        choices=IDLE_RTP,
        default="send",
        help="the sessiond systems' media node --idle-rtp policy (default send, as sessiond's)",
    )

    p = add("memory", _memory, "Redis memory per held answered call, and a full media tier")
    calls_option(p, "answered calls held (1-10000)")
    rate_option(p)
    idle_rtp_option(p, "the media node's --idle-rtp policy, send or keepalive (default keepalive)")
    p.add_argument(
        "--overflow",
        type=int,
        default=500,
        help="INVITEs sent once the calls are held, past the media capacity (0: none; default 500)",
    )

    p = add("idle", _idle, "media node CPU for answered calls nobody talks on, per --idle-rtp")
    calls_option(p, "legs held")
    seconds_option(p, "how long each measurement runs")
    rounds_option(p, "rounds of the policies")
    idle_rtp_option(p, "comma-separated policies, of send and keepalive (default: all, alternated)")

    p = add("register", _register, "REGISTERs/s with digest through `sessiond edge --registrar`")
    seconds_option(p, "how long each step runs")
    rates_option(p, "REGISTERs/s", REGISTER_RATES)

    owners: dict[str, list[str]] = {}
    for name, parser in benches.choices.items():
        for flag in parser._option_string_actions:
            if flag.startswith("--") and flag != "--help":
                owners.setdefault(flag, []).append(name)
    BenchParser.owners = owners
