"""Telling "that process went silent" from "the store was away", before judging heartbeats.

A heartbeat key (``process:<kind>:<name>``, a few seconds of TTL) that expired says its
owner did not write it in time: the owner died, stalled or lost its network, OR the store
itself was unreachable for everyone (restarted, failed over, stopped, cut off from us). After
a Redis outage longer than the TTL every heartbeat has lapsed at once (with AOF the keys come
back with their old expiry times, without it they are gone), and the first process back
would declare every other one lost.

So a process judges other processes' heartbeats only after ``grace`` seconds of steady
contact with the store: no failed call, no round trip and no gap between successful
heartbeat rounds longer than ``max_gap`` (a stalled store), and the same Redis run
(``run_id`` of ``INFO server``: a restart makes every heartbeat suspect) throughout. A
process that just started has no such history yet and waits too. ``grace`` is the
heartbeat TTL plus the longest retry backoff of the processes (they reconnect at their next
retry) plus one heartbeat interval: by then every live process has written its heartbeat
again, and one still missing is silent.

Sans-I/O: the caller reports its round trips and failures; the clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from sessiond.store.streams import MAX_BACKOFF

HEARTBEAT_INTERVAL = 1.0


class StoreContact:
    """One process's recent contact with the store."""

    def __init__(
        self, *, grace: float, max_gap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace = grace
        self.max_gap = max_gap
        self.now = clock
        start = clock()
        self._since = start  # steady contact since then (a start is contact just regained)
        self._last = start  # the last successful round trip ended then
        self._run_id = ""

    @classmethod
    def for_heartbeats(cls, ttl: float) -> StoreContact:
        """For judging heartbeats of ``ttl`` seconds written every second."""
        return cls(grace=ttl + MAX_BACKOFF + HEARTBEAT_INTERVAL, max_gap=ttl / 2)

    def failed(self) -> None:
        """A call to the store failed (connection refused or lost, timeout, loading)."""
        self._since = self._last = self.now()

    def reached(self, started: float, run_id: str = "") -> bool:
        """A round trip that began at ``started`` (this object's clock) succeeded, on the
        Redis run ``run_id`` if known. Returns :meth:`steady`."""
        now = self.now()
        restarted = bool(run_id and self._run_id and run_id != self._run_id)
        if restarted or now - started > self.max_gap or now - self._last > self.max_gap:
            self._since = now
        self._run_id = run_id or self._run_id
        self._last = now
        return self.steady()

    def steady(self) -> bool:
        """Long enough in steady contact to take a missing heartbeat for a silent process."""
        return self.now() - self._since >= self.grace


def run_id(info: Mapping[Any, Any] | None) -> str:
    """The ``run_id`` of a parsed ``INFO server`` reply (empty if absent)."""
    if not info:
        return ""
    value = info.get("run_id", info.get(b"run_id", ""))
    return value.decode() if isinstance(value, bytes) else str(value)
