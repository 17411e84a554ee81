"""The media node's 20 ms audio clock, and which legs it visits.

Every 20 ms the node ticks the legs that have audio work (send the player's, bridge's, room's
or the application's frame, record, relay RFC 4733 digits) and runs their RTCP and inactivity
timers. Datagrams are handled as they arrive, by the socket callbacks, without a task per
leg. The schedule is absolute (start + k * 20 ms) so timing errors do not accumulate; after a
stall of more than ``max_catch_up`` ticks the loop skips ahead instead of bursting.

Idle legs (:class:`LegSchedule`): with the ``send`` policy every leg is ticked every 20 ms
and one with nothing to play sends a silence frame (what many phones expect: a steady stream).
With ``keepalive`` a leg with nothing to play (no play, tap, bridge peer, room, recording or
digits: :attr:`Leg.busy`) is put to sleep after its tick: it costs nothing until its next
due time (a min-heap), when it sends one silence packet (marked, its RTP timestamp moved on
by the frames not sent) every ``keepalive`` seconds, so the far end's RTP-inactivity timer
and the NAT bindings on the path stay alive, and its RTCP (RFC 3550, 5 s) and inactivity
timer run as before. Whatever gives the leg work again (:meth:`Leg.wake`) puts it back on
the 20 ms tick at once. While asleep a leg does not decode the audio it receives (nobody
would hear it); reception stats, latching and DTMF detection go on in the socket callback.
A bridged leg stays on the tick but, with ``keepalive``, sends only what its peer received:
on a tick with nothing to relay it sends no RTP but the keepalive (:meth:`Leg.tick`).

Load (:class:`TickLoad`): how long the ticks took and how late they started, per heartbeat;
the node reports itself full to the edges when it is falling behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessiond.media import node_metrics as metrics

if TYPE_CHECKING:
    from sessiond.media.leg import Leg

log = logging.getLogger("sessiond.media")
TICK = 0.02
IDLE_RTP = ("send", "keepalive")
IDLE_RTP_HELP = (
    "what an answered leg with nothing to play sends: 'send' a silence frame every 20 ms "
    "(default; for peers that hang up on a short RTP timeout), 'keepalive' one silence "
    "packet every --idle-keepalive seconds plus RTCP, and no per-leg work between (for "
    "thousands of held calls; a bridged leg then relays only the audio that arrives)"
)
DEFAULT_KEEPALIVE = 5.0


@dataclass(slots=True)
class TickLoad:
    """Ticks since the last :meth:`take`: how many, how many started more than one period
    late, and the seconds spent in them."""

    since: float
    ticks: int = 0
    late: int = 0
    busy: float = 0.0

    def record(self, behind: float, seconds: float) -> None:
        self.ticks += 1
        self.busy += seconds
        if behind > TICK:
            self.late += 1

    def take(self, now: float) -> tuple[float, float]:
        """(share of the time spent ticking, share of ticks late) since the last take."""
        elapsed = max(now - self.since, TICK)
        shares = (self.busy / elapsed, self.late / self.ticks if self.ticks else 0.0)
        self.since, self.ticks, self.late, self.busy = now, 0, 0, 0.0
        return shares


async def run_ticker(
    tick: Callable[[float], None], max_catch_up: int, load: TickLoad | None = None
) -> None:
    """Call ``tick(now)`` every 20 ms, forever."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        now = loop.time()
        behind = now - due
        if behind > max_catch_up * TICK:
            skipped = int(behind / TICK)
            metrics.TICKS_SKIPPED.inc(skipped)
            due += skipped * TICK
        elif behind > TICK:
            metrics.TICKS_LATE.inc()
        tick(now)
        took = loop.time() - now
        metrics.TICK_SECONDS.observe(took)
        if load is not None:
            load.record(behind, took)
        due += TICK
        await asyncio.sleep(max(0.0, due - loop.time()))


def tick_legs(executor: Any, node: str, now: float) -> None:
    """Tick every leg once (the ``send`` policy; one leg's failure must not stop the others:
    it is closed)."""
    for leg in list(executor.legs.values()):
        try:
            leg.tick(now)
        except Exception:
            log.exception("%s: tick failed; closing the leg", leg.media_id)
            with contextlib.suppress(Exception):
                executor.end(leg, f"{node}:error:{leg.media_id}")


def _tick(executor: Any, node: str, leg: Leg, now: float) -> bool:
    """One leg's tick; False when it failed (the leg is then closed: one leg's failure must
    not stop the others)."""
    try:
        leg.tick(now)
    except Exception:
        log.exception("%s: tick failed; closing the leg", leg.media_id)
        with contextlib.suppress(Exception):
            executor.end(leg, f"{node}:error:{leg.media_id}")
        return False
    return True


class LegSchedule:
    """The legs the 20 ms tick visits (``active``), and the sleeping ones by due time.

    ``keepalive``: 0 for the ``send`` policy (no leg ever sleeps), else the seconds between
    two silence packets of a sleeping leg.
    """

    def __init__(self, executor: Any, node: str, keepalive: float = 0.0) -> None:
        self.executor = executor
        self.node = node
        self.keepalive = keepalive
        self.active: dict[Leg, None] = {}  # an ordered set
        self._sleeping: list[tuple[float, int, Leg]] = []  # (due, token, leg), a heap
        self._tokens = itertools.count(1)
        executor.on_leg = self.add

    def add(self, leg: Leg) -> None:
        """A new leg: ticked from the next tick on."""
        if self.keepalive:  # (with ``send`` every leg of the executor is ticked)
            leg.on_busy = self.wake
            leg.keepalive = self.keepalive
            self.active[leg] = None

    def wake(self, leg: Leg) -> None:
        """``leg`` has audio work again: tick it every 20 ms (its heap entry goes stale)."""
        leg.resume(self.executor.clock())
        leg.sleep_token = 0
        self.active[leg] = None

    @property
    def sleeping(self) -> int:
        """Legs asleep now."""
        return len(self.executor.legs) - len(self.active) if self.keepalive else 0

    def tick(self, now: float) -> None:
        """Tick the active legs (those left with no work go to sleep), then visit the
        sleeping legs whose time has come."""
        executor, node, keepalive = self.executor, self.node, self.keepalive
        if not keepalive:
            tick_legs(executor, node, now)
            return
        for leg in list(self.active):
            if leg.closed:
                del self.active[leg]
            elif not _tick(executor, node, leg, now):
                del self.active[leg]
            elif not leg.busy:
                del self.active[leg]
                self._sleep(leg, leg.sleep(now, keepalive))
        heap = self._sleeping
        while heap and heap[0][0] <= now:
            _, token, leg = heapq.heappop(heap)
            if leg.closed or token != leg.sleep_token:
                continue  # ended, or woken since
            try:
                due = leg.idle_tick(now, keepalive)
            except Exception:
                log.exception("%s: idle tick failed; closing the leg", leg.media_id)
                with contextlib.suppress(Exception):
                    executor.end(leg, f"{node}:error:{leg.media_id}")
                continue
            self._sleep(leg, max(due, now + TICK))

    def _sleep(self, leg: Leg, due: float) -> None:
        token = next(self._tokens)
        leg.sleep_token = token
        heapq.heappush(self._sleeping, (due, token, leg))
