"""Partition leases between real worker processes on a real Redis: two workers split the
partitions, a kill -9'd worker's partitions go to the survivor, a stopped worker leaves
none behind. (How fast is measured by hand, never asserted: see docs/architecture.md.)"""

from __future__ import annotations

import signal

from sessiond.store import Keys

from .harness import Cluster, wait_for


def owners(cluster: Cluster, keys: Keys) -> list[str | None]:
    return [o.decode() if o else None for o in cluster.redis().mget(keys.leases())]


def test_leases_follow_the_live_workers(cluster: Cluster) -> None:
    keys = Keys(cluster.namespace)
    cluster.start("wa", "worker", *cluster.common(), "--name", "wa")
    assert wait_for(lambda: owners(cluster, keys).count("wa") == keys.partitions, 30)
    cluster.start("wb", "worker", *cluster.common(), "--name", "wb")
    half = keys.partitions // 2
    assert wait_for(
        lambda: sorted(map(str, owners(cluster, keys))) == ["wa"] * half + ["wb"] * half, 30
    ), owners(cluster, keys)
    cluster.kill("wa")  # SIGKILL: its leases lapse instead of being released
    assert wait_for(lambda: owners(cluster, keys).count("wb") == keys.partitions, 30)
    cluster.kill("wb", signal.SIGTERM)
    assert owners(cluster, keys) == [None] * keys.partitions  # released on the way out
