"""``sessiond bench idle``: the CPU a media node spends on answered calls nobody talks on.

N legs are created by the node's own :class:`~sessiond.media.commands.Executor` (answering a
G.711 offer whose far end is one loopback socket this process never reads: the kernel drops
what overflows it, so only the sending side is measured) and driven by the node's
:class:`~sessiond.media.ticker.LegSchedule` on the node's 20 ms ticker, under each
``--idle-rtp`` policy in turn (alternated, ``--rounds`` times). After a second to settle,
the process CPU is measured for ``--seconds``: the share of one core, the datagrams sent
per second, and the mean tick. No Redis: commands are called directly, and the far end
sends nothing (a held call whose caller is silent, as sipp's uac is).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from sessiond.cli.bench import far_end
from sessiond.cli.bench.far_end import LOOPBACK
from sessiond.core.types import Event
from sessiond.media.ticker import DEFAULT_KEEPALIVE, IDLE_RTP, LegSchedule, TickLoad, run_ticker

RTP_FIRST = 55000  # up to ~5,000 legs below 65535, away from the tests' ranges


@dataclass
class Sample:
    policy: str
    legs: int
    cpu_percent: float
    sent_pps: float
    mean_tick_ms: float


async def _measure(legs: int, policy: str, seconds: float, sink: int) -> Sample:
    loop = asyncio.get_running_loop()
    events: list[Event] = []
    executor = far_end.executor(RTP_FIRST, RTP_FIRST + 2 * legs + 199, events)
    schedule = LegSchedule(executor, "bench", DEFAULT_KEEPALIVE if policy == "keepalive" else 0.0)
    load = TickLoad(loop.time())
    ticker = asyncio.create_task(run_ticker(schedule.tick, 5, load))
    try:
        for i in range(legs):
            await far_end.answer(executor, f"idle-{i}", sink, f"c{i}")
        await asyncio.sleep(1.0)  # the legs' first packets, then (keepalive) asleep
        sent0 = sum(leg.sent for leg in executor.legs.values())
        load.take(loop.time())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        busy, _ = load.take(loop.time())
        ticks = max(1, round(wall / 0.02))
        sent = sum(leg.sent for leg in executor.legs.values()) - sent0
    finally:
        ticker.cancel()
        executor.close_all("bench")
    return Sample(policy, legs, 100 * cpu / wall, sent / wall, 1000 * busy * wall / ticks)


async def _run(legs: list[int], policies: list[str], seconds: float, rounds: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.bind((LOOPBACK, 0))
        port = sink.getsockname()[1]
        print(f"{'policy':<10} {'legs':>6} {'CPU % of a core':>16} {'sent/s':>9} {'tick ms':>8}")
        for n in legs:
            for _ in range(rounds):
                for policy in policies:
                    s = await _measure(n, policy, seconds, port)
                    print(
                        f"{s.policy:<10} {s.legs:>6} {s.cpu_percent:>16.1f} "
                        f"{s.sent_pps:>9.0f} {s.mean_tick_ms:>8.3f}",
                        flush=True,
                    )


def bench_idle(legs: list[int], seconds: float, rounds: int, policies: str = "") -> int:
    """Print CPU per policy for each leg count; 2 on a bad ``--idle-rtp`` list."""
    chosen = [p for p in policies.split(",") if p] or list(IDLE_RTP)
    unknown = [p for p in chosen if p not in IDLE_RTP]
    if unknown:
        print(f"sessiond bench idle: --idle-rtp: unknown policy {unknown[0]!r}")
        return 2
    asyncio.run(_run(legs, chosen, seconds, rounds))
    return 0
