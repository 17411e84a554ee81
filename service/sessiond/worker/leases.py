"""Partition leases: which event partitions this worker reads.

Every worker says it is alive in ``processes:worker`` (a sorted set scored by time), counts
the workers seen in the last second, and holds a fair share of the partitions,
ceil(partitions / live), through lease.lua. A worker above its share gives leases up, one
below takes free ones; a dead worker drops out of the count after a second and its leases
lapse after ``lease_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from sessiond.core import metrics
from sessiond.store import Store
from sessiond.store.liveness import list_and_count, unlist

log = logging.getLogger("sessiond.worker")


class Leases:
    def __init__(self, store: Store, name: str, lease_ms: int, interval: float) -> None:
        self.store = store
        self.name = name
        self.lease_ms = lease_ms
        self.interval = interval
        self.owned: frozenset[int] = frozenset()  # the partitions whose lease we hold

    async def renew(self, stopping: asyncio.Event) -> None:
        """Say we are alive, count the live workers, and hold our share (unless stopping)."""
        store = self.store
        since = time.time() - 4 * self.interval  # the workers seen in the last four intervals
        live = await list_and_count(store.redis, store.keys, "worker", self.name, since)
        if not stopping.is_set():
            await self.hold(math.ceil(self.store.keys.partitions / max(1, live)))

    async def leave(self) -> None:
        """Leave the live count, then let the other workers take our partitions at once."""
        await unlist(self.store.redis, self.store.keys, "worker", self.name)
        await self.hold(0)

    async def hold(self, share: int) -> None:
        held = await self.store.scripts.lease(
            keys=self.store.keys.leases(), args=[self.name, self.lease_ms, share]
        )
        owned = frozenset(int(p) for p in held)
        if owned != self.owned:
            log.info("worker %s reads partitions %s", self.name, sorted(owned))
        self.owned = owned
        metrics.PARTITIONS.labels(self.name).set(len(owned))
