"""``sessiond bench media``: how much G.711 (20 ms) RTP one media process can handle.

Two measurements, printed one after the other:

1. **CPU only** (:func:`sessiond.media.bench.bench_relay`): packets per second one core pushes
   through the relay pipelines, no sockets. A bridged leg receives 50 packets/s and its peer
   sends each of them on: one relayed packet per received packet, so ``legs = pps / 50``.
2. **Real sockets, one media node** (this module): N legs created by the node's own
   :class:`~sessiond.media.commands.Executor` (answering a G.711 offer), bridged pairwise,
   ticked every 20 ms by the same per-leg code the node runs (:meth:`Leg.tick`), on one event
   loop in this process. A separate sender process plays the far end of every leg on loopback:
   50 PCMU packets/s into each leg, and counts what comes back. N grows until a 20 ms tick no
   longer fits in 20 ms (ticks late) or packets are lost; the largest N that kept up is
   reported. This includes socket syscalls and the asyncio loop, but no Redis (commands are
   called directly) and the sender shares the machine's cores.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from sessiond.cli.bench import far_end
from sessiond.core.messages import Bridge
from sessiond.core.types import Event
from sessiond.media.bench import bench_relay
from sessiond.media.commands import MediaCommand
from sessiond.media.node import TICK

PACKETS_PER_SECOND = 50  # G.711, 20 ms per packet, per direction per leg
RTP_RANGE = (36000, 37999)
STEPS = (50, 100, 200, 300, 400, 500, 600, 800)


@dataclass
class Step:
    legs: int
    seconds: float
    ticks: int
    late_ticks: int
    mean_tick_ms: float
    max_tick_ms: float
    node_in_pps: float
    node_out_pps: float
    sender_sent: int
    sender_received: int
    cpu_percent: float

    @property
    def loss(self) -> float:
        """Fraction of the sender's packets that never came back (relayed) from the node."""
        expected = self.sender_sent  # every packet in is relayed out once through the bridge
        return max(0.0, 1 - self.sender_received / expected) if expected else 1.0

    @property
    def kept_up(self) -> bool:
        return self.late_ticks <= max(1, self.ticks // 100) and self.loss < 0.01


async def _step(legs: int, seconds: float, conn: Connection, far_port: int) -> Step:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    executor = far_end.executor(*RTP_RANGE, events)
    try:
        leg_ports = []
        for i in range(legs):
            leg = await far_end.answer(executor, f"bench-{i}", far_port, f"c{i}")
            leg_ports.append(leg.port)
        for i in range(0, legs - 1, 2):
            pair = Bridge(media_id=f"bench-{i}.m", other=f"bench-{i + 1}.m")
            await executor.execute(MediaCommand(f"b{i}", "bridge", f"bench-{i}", pair))
        conn.send((leg_ports, [False] * legs, seconds))
        durations: list[float] = []
        late = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        due = loop.time()
        deadline = due + seconds
        while due < deadline:
            now = loop.time()
            if now - due > TICK:
                late += 1
            for leg in list(executor.legs.values()):
                leg.tick(now)
            durations.append(loop.time() - now)
            due += TICK
            await asyncio.sleep(max(0.0, due - loop.time()))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        node_in = sum(leg.received for leg in executor.legs.values())
        node_out = sum(leg.sent for leg in executor.legs.values())
        # Let the sender's last packets and our replies land before counting.
        while not conn.poll():
            for leg in list(executor.legs.values()):
                leg.tick(loop.time())
            await asyncio.sleep(TICK)
        sent, received, _ = conn.recv()
    finally:
        executor.close_all("bench")
    return Step(
        legs=legs,
        seconds=wall,
        ticks=len(durations),
        late_ticks=late,
        mean_tick_ms=1000 * sum(durations) / max(1, len(durations)),
        max_tick_ms=1000 * max(durations, default=0.0),
        node_in_pps=node_in / wall,
        node_out_pps=node_out / wall,
        sender_sent=sent,
        sender_received=received,
        cpu_percent=100 * cpu / wall,
    )


async def _sockets(seconds: float) -> list[Step]:
    steps: list[Step] = []
    with far_end.sender() as (conn, far_port):
        share = max(1.0, seconds / len(STEPS))
        for legs in STEPS:
            step = await _step(legs, share, conn, far_port)
            steps.append(step)
            _print_step(step)
            if not step.kept_up:
                break
    return steps


def _print_step(s: Step) -> None:
    verdict = "kept up" if s.kept_up else "FELL BEHIND"
    print(
        f"  {s.legs:4d} legs: in {s.node_in_pps:8.0f} pkt/s, out {s.node_out_pps:8.0f} pkt/s, "
        f"tick mean {s.mean_tick_ms:5.2f} ms max {s.max_tick_ms:6.2f} ms, "
        f"late ticks {s.late_ticks}/{s.ticks}, loss {100 * s.loss:5.2f}%, "
        f"node CPU {s.cpu_percent:5.1f}%  -> {verdict}",
        flush=True,
    )


def bench_media(seconds: float) -> int:
    """Run both measurements (about ``seconds`` in all) and print the results; exit status."""
    cpu_seconds = max(0.3, seconds / 3)
    print(f"sessiond bench media: G.711 PCMU, 20 ms packets ({PACKETS_PER_SECOND} pkt/s per leg)")
    print(f"\n1. CPU only, no sockets, one core ({cpu_seconds:.1f} s): sessiond.media.bench")
    r = bench_relay(cpu_seconds)
    for key, what in (
        ("relay_pps", "parse + rewrite header + serialise (a packet-level relay)"),
        ("jitter_pps", "the same through a jitter buffer"),
        ("transcode_pps", "decode PCMU + encode PCMA (what a bridge tick does per frame)"),
    ):
        print(
            f"  {key:14} {r[key]:10.0f} pkt/s -> {r[key] / PACKETS_PER_SECOND:7.0f} legs "
            f"({r[key] / PACKETS_PER_SECOND / 2:6.0f} two-leg calls)  {what}"
        )
    print("  legs = pkt/s / 50: each bridged leg receives 50 pkt/s, each relayed once to its peer")
    socket_seconds = max(1.0, seconds - cpu_seconds)
    print(
        f"\n2. Real sockets on loopback, one media node process, legs bridged pairwise, a sender "
        f"process as every far end ({socket_seconds:.0f} s, split across steps):"
    )
    steps = asyncio.run(_sockets(socket_seconds))
    good = [s for s in steps if s.kept_up]
    if good:
        best = good[-1]
        print(
            f"  => {best.legs} concurrent G.711 legs ({best.legs // 2} bridged calls) kept up: "
            f"{best.node_in_pps + best.node_out_pps:.0f} RTP pkt/s through the node "
            f"({best.node_in_pps:.0f} in + {best.node_out_pps:.0f} out) at "
            f"{best.cpu_percent:.0f}% of one core"
            + ("; the largest step tried" if best is steps[-1] and best.legs == STEPS[-1] else "")
        )
    else:
        print(f"  => even {steps[0].legs} legs did not keep up on this machine")
    return 0
