"""``sessiond bench peers``: the same stepped call load against Kamailio, sippy and
sessiond, side by side in one sitting on this machine, so that what is compared is ratios.

Every system is started once (its own ports, its own private ``redis-server`` if it uses
one) and stays up; the steps alternate between the systems (round 1: rate 1 on each system,
rate 2 on each..., then round 2), so a slow minute of the machine falls on all of them. A
step is ``rate * seconds`` calls from the dialog-following sipp caller of
:mod:`~sessiond.cli.bench.dialog_sipp`, each held ``--hold`` seconds, answered by a sipp
callee behind the forwarding systems. A step passes with 0 failed calls and at least 90% of
its rate achieved (the last call done within ``seconds / 0.9 + hold``; else the verdict is
``slow``: how sessiond degrades past its ceiling); a system that does not pass a step is not
stepped higher in that round.

Per step: CPU ms per call (user+system time of the system's own processes and of its one
redis-server, from /proc, split by process), setup p50/p99 (INVITE sent -> 200 received, at
the caller), retransmissions (caller and callee, sent and received).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sessiond.cli.bench.command import PEERS_RATES
from sessiond.cli.bench.dialog_sipp import Step, run_step
from sessiond.cli.bench.peer_systems import (
    SYSTEMS,
    PeerMissing,
    Running,
    install,
    start,
    why_missing,
)

DEFAULT_RATES = PEERS_RATES
IDLE_SECONDS = 3.0


@dataclass
class Measured:
    """One system's steps, by round."""

    name: str
    hold: float
    note: str = ""
    #: CPU ms per second with no calls (heartbeats, timers, the media node's tick): it is
    #: part of every step's figure, a larger share at low rates
    idle: float = float("nan")
    rounds: list[dict[int, tuple[Step, dict[str, float]]]] = field(default_factory=list)

    def verdict(self, rate: int, step: Step) -> str:
        """``pass``; ``FAIL`` (a call failed); ``slow``: every call succeeded, but the step
        took longer than ``seconds / 0.9 + hold`` (under 90% of the rate achieved: setup
        delays at the end of the step, or sipp could not place the calls in time)."""
        if step.failed or step.ok < step.calls:
            return "FAIL"
        achieved = step.ok / max(step.elapsed - self.hold, 1e-3)
        return "pass" if achieved >= 0.9 * rate else "slow"

    def passed(self, rate: int, step: Step) -> bool:
        return self.verdict(rate, step) == "pass"

    def clean(self, round_: int) -> int:
        steps = self.rounds[round_] if round_ < len(self.rounds) else {}
        return max((r for r, (s, _) in steps.items() if self.passed(r, s)), default=0)


def parse_systems(text: str) -> list[str] | str:
    names = [n.strip() for n in text.split(",") if n.strip()] if text else list(SYSTEMS)
    names = list(dict.fromkeys(names))  # each once, in the order given
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        return f"--systems: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(SYSTEMS)}"
    return names


def _split(used: dict[str, float], calls: int) -> str:
    return " ".join(f"{role} {1000 * v / calls:.2f}" for role, v in sorted(used.items()))


def _measure_step(
    system: Running, rate: int, seconds: float, hold: float, work: Path
) -> tuple[Step, dict[str, float]]:
    cpu0 = system.cpu()
    step = run_step(system.port, rate, seconds, hold, work / system.name, system.callee_port)
    cpu1 = system.cpu()
    return step, {role: max(0.0, cpu1[role] - cpu0.get(role, 0.0)) for role in cpu1}


def _row(m: Measured, round_: int, rate: int, step: Step, used: dict[str, float]) -> str:
    calls = max(1, step.ok)
    total = 1000 * sum(used.values()) / calls
    return (
        f"{m.name:<17} {round_ + 1:>5} {rate:>5} {step.ok:>6} {step.failed:>6} "
        f"{m.verdict(rate, step):>7} "
        f"{total:>8.2f} {step.p50:>6.0f} {step.p99:>6.0f} {step.retransmissions:>7}   "
        f"{_split(used, calls)}"
    )


def _summary(results: list[Measured], rounds: int) -> None:
    """Per system: the highest clean step of each round, and CPU per call, setup and
    retransmissions at the highest step every measured system passed in every round."""
    measured = [m for m in results if m.rounds]
    common = min((min(m.clean(r) for r in range(rounds)) for m in measured), default=0)
    at = f"at {common} calls/s" if common else "at the first step"
    print(f"\nsummary ({rounds} round(s); CPU, setup and retransmissions {at}, mean of rounds)")
    print(
        f"{'system':<17} {'clean step per round':>21} {'cpu ms/call':>11} "
        f"{'p50':>5} {'p99':>5} {'retrans':>7} {'idle ms/s':>9}   cpu ms/call by process"
    )
    for m in results:
        if not m.rounds:
            print(f"{m.name:<17} not measured: {m.note}")
            continue
        clean = ", ".join(str(m.clean(r)) for r in range(len(m.rounds)))
        steps = [rs[common] if common in rs else rs[min(rs)] for rs in m.rounds if rs]
        calls = sum(max(1, s.ok) for s, _ in steps)
        used: dict[str, float] = {}
        for _, u in steps:
            for role, v in u.items():
                used[role] = used.get(role, 0.0) + v
        total = 1000 * sum(used.values()) / calls
        p50 = _mean([s.p50 for s, _ in steps])
        p99 = _mean([s.p99 for s, _ in steps])
        retrans = sum(s.retransmissions for s, _ in steps) / len(steps)
        print(
            f"{m.name:<17} {clean:>21} {total:>11.2f} {p50:>5.0f} {p99:>5.0f} {retrans:>7.0f} "
            f"{m.idle:>9.1f}   {_split(used, calls)}"
        )


def _mean(values: list[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return sum(good) / len(good) if good else float("nan")


def _check(systems: str, hold: float, do_install: bool) -> list[Measured] | None:
    """The systems to measure, after installing what they need (``--install``); None after
    a one-line error. A missing db_redis module only marks ``kamailio-redis`` not measured,
    unless it was asked for by name."""
    names = parse_systems(systems)
    if isinstance(names, str):
        print(f"sessiond bench peers: {names}", file=sys.stderr)
        return None
    if shutil.which("sipp") is None:
        print("sessiond bench peers needs sipp (Debian package sip-tester)", file=sys.stderr)
        return None
    if do_install:
        try:
            install(names)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"sessiond bench peers: --install failed: {exc}", file=sys.stderr)
            return None
    results = [Measured(n, hold) for n in names]
    for m in results:
        reason = why_missing(m.name)
        if reason is None:
            continue
        if m.name != "kamailio-redis" or "kamailio-redis" in systems:
            print(f"sessiond bench peers: {m.name}: {reason}; run with --install", file=sys.stderr)
            return None
        m.note = f"{reason}; --install adds it"
    return results


def _rounds(
    results: list[Measured],
    running: dict[str, Running],
    rates: list[int],
    seconds: float,
    rounds: int,
    work: Path,
) -> None:
    hold = results[0].hold
    measured = [m for m in results if m.name in running]
    before = {m.name: sum(running[m.name].cpu().values()) for m in measured}
    time.sleep(IDLE_SECONDS)
    for m in measured:
        m.idle = 1000 * (sum(running[m.name].cpu().values()) - before[m.name]) / IDLE_SECONDS
    print(
        f"{len(running)} system(s) up; {seconds:g} s per step, calls held {hold:g} s, "
        f"{rounds} round(s)"
    )
    print(
        f"{'system':<17} {'round':>5} {'rate':>5} {'ok':>6} {'failed':>6} {'verdict':>7} "
        f"{'cpu ms':>8} {'p50':>6} {'p99':>6} {'retrans':>7}   cpu ms/call by process"
    )
    for round_ in range(rounds):
        stepping = list(measured)
        for m in measured:
            m.rounds.append({})
        for rate in rates:
            for m in list(stepping):
                step, used = _measure_step(running[m.name], rate, seconds, hold, work)
                m.rounds[round_][rate] = (step, used)
                print(_row(m, round_, rate, step, used), flush=True)
                if not m.passed(rate, step):
                    stepping.remove(m)
                time.sleep(1.0)


def peers(
    systems: str,
    rates: list[int],
    seconds: float,
    rounds: int,
    hold: float,
    do_install: bool,
    *,
    idle_rtp: str = "send",
) -> int:
    """``idle_rtp``: the sessiond systems' ``--idle-rtp`` (the media node's idle policy)."""
    results = _check(systems, hold, do_install)
    if results is None:
        return 2
    work = Path(tempfile.mkdtemp(prefix="sessiond-peers-"))
    running: dict[str, Running] = {}
    try:
        for m in results:
            if m.note:
                continue
            try:
                running[m.name] = start(m.name, work, idle_rtp=idle_rtp)
            except PeerMissing as exc:
                print(f"sessiond bench peers: {m.name}: {exc}", file=sys.stderr)
                return 1
        _rounds(results, running, rates, seconds, rounds, work)
        _summary(results, rounds)
    finally:
        for system in running.values():
            system.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0
