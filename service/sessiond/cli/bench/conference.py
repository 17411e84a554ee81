"""``sessiond bench conference``: how many rooms x members one media process mixes in real time.

Real sockets, the node's own code: N legs made by the node's
:class:`~sessiond.media.commands.Executor` (answering a G.711 PCMU offer), put in rooms of
``members`` (:meth:`~sessiond.media.rooms.Conferences.mix_here`, the step a ``conf_join``
takes once the room record said yes: no Redis here), and ticked every 20 ms as the node
ticks them (every leg, then every room's mix). A sender process plays the far end of every
leg on loopback: 50 PCMU packets/s of a tone into each (``talkers`` members per room talk,
the others send silence, as a listening phone does) and counts the mixed packets that come
back. The number of rooms grows until a tick no longer fits in 20 ms or packets are lost;
the largest step that kept up is the result, with the node's CPU per member. Printed, never
asserted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sessiond.cli.bench import far_end
from sessiond.core.types import Event
from sessiond.media.node import TICK
from sessiond.media.rooms import Conferences
from sessiond.store import Keys
from sessiond.store.client import EMBEDDED, connect
from sessiond.store.rooms import MemberFlags, RoomStore

RTP_RANGE = (38000, 39999)
ROOM_STEPS = (2, 5, 10, 20, 40, 60, 80, 100, 140, 200)


@dataclass
class Step:
    rooms: int
    members: int
    ticks: int
    late_ticks: int
    mean_tick_ms: float
    sent: int
    received: int
    cpu_percent: float

    @property
    def legs(self) -> int:
        return self.rooms * self.members

    @property
    def loss(self) -> float:
        """Packets the sender sent that did not come back as mixed packets (each leg sends
        one mixed packet per received one)."""
        return max(0.0, 1 - self.received / self.sent) if self.sent else 1.0

    @property
    def kept_up(self) -> bool:
        return self.late_ticks <= max(1, self.ticks // 100) and self.loss < 0.01

    @property
    def cpu_per_member(self) -> float:
        """Percent of one core per member."""
        return self.cpu_percent / self.legs


async def _step(
    rooms: int, members: int, talkers: int, seconds: float, conn: Connection, far: int
) -> Step:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    executor = far_end.executor(*RTP_RANGE, events)
    redis: Any = connect(EMBEDDED)
    conferences = Conferences(executor, RoomStore(redis, Keys("bench")))
    try:
        ports, talking = [], []
        for r in range(rooms):
            for m in range(members):
                sid = f"bench-{r}-{m}"
                leg = await far_end.answer(executor, sid, far, f"c{sid}")
                conferences.mix_here(f"room{r}", leg, MemberFlags())
                ports.append(leg.port)
                talking.append(m < talkers)
        conn.send((ports, talking, seconds))
        durations: list[float] = []
        late = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        due = loop.time()
        while True:
            now = loop.time()
            if now - due > TICK:
                late += 1
            for leg in list(executor.legs.values()):
                leg.tick(now)
            conferences.tick()
            durations.append(loop.time() - now)
            due += TICK
            await asyncio.sleep(max(0.0, due - loop.time()))
            if time.perf_counter() - wall0 >= seconds:
                break
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        while not conn.poll():
            for leg in list(executor.legs.values()):
                leg.tick(loop.time())
            conferences.tick()
            await asyncio.sleep(TICK)
        sent, received, _ = conn.recv()
    finally:
        executor.close_all("bench")
        await redis.aclose()
    return Step(
        rooms=rooms,
        members=members,
        ticks=len(durations),
        late_ticks=late,
        mean_tick_ms=1000 * sum(durations) / max(1, len(durations)),
        sent=sent,
        received=received,
        cpu_percent=100 * cpu / wall,
    )


def _print(s: Step) -> None:
    verdict = "kept up" if s.kept_up else "FELL BEHIND"
    print(
        f"  {s.rooms:4d} rooms x {s.members:2d} = {s.legs:4d} members: tick mean "
        f"{s.mean_tick_ms:5.2f} ms, late {s.late_ticks}/{s.ticks}, loss {100 * s.loss:5.2f}%, "
        f"node CPU {s.cpu_percent:5.1f}% ({s.cpu_per_member:.3f}% per member) -> {verdict}",
        flush=True,
    )


async def _run(members: int, talkers: int, seconds: float) -> list[Step]:
    steps: list[Step] = []
    with far_end.sender() as (conn, far):
        share = max(1.0, seconds / 6)
        for rooms in ROOM_STEPS:
            if rooms * members > RTP_RANGE[1] - RTP_RANGE[0]:
                break
            step = await _step(rooms, members, talkers, share, conn, far)
            steps.append(step)
            _print(step)
            if not step.kept_up:
                break
    return steps


def bench_conference(seconds: float, members: int = 5, talkers: int = 3) -> int:
    """Print how many rooms of ``members`` (``talkers`` of them talking) one media process
    mixes in real time with G.711 20 ms legs, and the CPU per member; exit status 0."""
    print(
        f"sessiond bench conference: rooms of {members} members ({talkers} talking), "
        "G.711 PCMU 20 ms, real sockets on loopback, one media process, a sender process "
        "as every far end"
    )
    steps = asyncio.run(_run(members, talkers, seconds))
    good = [s for s in steps if s.kept_up]
    if not good:
        print(f"  => even {steps[0].rooms} rooms did not keep up on this machine")
        return 0
    best = good[-1]
    last = " (the largest step tried)" if best is steps[-1] else ""
    print(
        f"  => {best.rooms} rooms x {best.members} members = {best.legs} members mixed in real "
        f"time{last}, at {best.cpu_percent:.0f}% of one core: {best.cpu_per_member:.3f}% of a "
        f"core ({best.cpu_per_member * 10:.2f} ms of CPU per second) per member"
    )
    return 0
