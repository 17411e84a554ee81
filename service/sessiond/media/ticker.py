"""The media node's 20 ms audio clock: one loop ticks every leg.

Every 20 ms each leg is ticked (send the player's, bridge's or a silence frame, record, run
RTCP/inactivity timers). Datagrams are handled as they arrive, by the socket callbacks,
without a task per leg. The schedule is absolute (start + k * 20 ms) so timing errors do
not accumulate; after a stall of more than ``max_catch_up`` ticks the loop skips ahead
instead of bursting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sessiond.media import node_metrics as metrics

log = logging.getLogger("sessiond.media")
TICK = 0.02


async def run_ticker(tick: Callable[[float], None], max_catch_up: int) -> None:
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
        metrics.TICK_SECONDS.observe(loop.time() - now)
        due += TICK
        await asyncio.sleep(max(0.0, due - loop.time()))


def tick_legs(executor: Any, node: str, now: float) -> None:
    """Tick every leg once (one leg's failure must not stop the others: it is closed)."""
    for leg in list(executor.legs.values()):
        try:
            leg.tick(now)
        except Exception:
            log.exception("%s: tick failed; closing the leg", leg.media_id)
            with contextlib.suppress(Exception):
                executor.end(leg, f"{node}:error:{leg.media_id}")
