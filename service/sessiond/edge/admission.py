"""What one source may hold, how much media is left, and who keeps guessing passwords.
Sans-I/O: the edge calls these with a clock and acts on the answers.

The per-source rate limit (:mod:`~sessiond.edge.ratelimit`) bounds how fast a source starts
calls, not how many it holds: 50 INVITEs/s times the 32 s a caller may take to ACK our 200 is
about 1,600 calls from one address, more than the media nodes have legs. So the edge also
counts what each source holds:

* :class:`SourceCalls`: an initial INVITE the edge passed on to the workers is *held* by its
  source (keyed by Call-ID and the caller's From tag, as the worker keys the session) until
  the call ends as the edge sees it: a final non-2xx to that INVITE goes out (rejected,
  cancelled: 487, failed), we send a BYE for it (our hangup, or no ACK within 64*T1: the
  table's AckTimeout sends one), or we answer 2xx to the caller's BYE. A call the edge lost
  track of (the worker ended it without SIP, a worker died) is found by
  :meth:`SourceCalls.stale`: entries older than a minimum age whose session registry entry
  has gone from Redis are dropped by the edge's heartbeat.
* :class:`MediaCapacity`: the free RTP port pairs the media nodes report in their heartbeat,
  minus the calls this edge admitted since the reports it holds (so a burst inside one
  heartbeat period cannot overshoot), against a reserve. A call released before the report
  that is sure to reflect it gives its leg back at once: a source sending INVITE + CANCEL at
  its rate limit holds few calls, and must not drive the estimate down to the reserve (503
  to every caller) with calls that have already ended.
* :class:`Admission`: both, with the per-source limit either fixed or derived from media
  capacity (calls up to a third of the legs the live media nodes have: one source leaves
  at least two thirds of the legs to others with one leg per call, a third with the
  gateway's two).

Digest guessing: :class:`AuthThrottle` counts failed digest answers per source; after
``max_failures`` within ``window`` seconds the source is locked out for ``lockout`` seconds
(every INVITE/REGISTER from it gets 403, even with the right password, so a guess made during
the lockout learns nothing).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

CallKey = tuple[str, str]  # (Call-ID, the caller's From tag)


@dataclass(frozen=True, slots=True)
class Shed:
    """A new call refused: 503 with ``Retry-After: retry_after`` and ``reason`` as the
    reason phrase; ``why`` labels ``sessiond_sip_dropped_total``."""

    why: str
    reason: str
    retry_after: int


class SourceCalls:
    """Calls held per source address (live or pending initial INVITEs)."""

    def __init__(self) -> None:
        self._calls: OrderedDict[CallKey, tuple[str, float]] = OrderedDict()  # source, since
        self._per_source: Counter[str] = Counter()

    def held(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def admit(self, key: CallKey, source: str, now: float) -> None:
        """``source`` now holds the call ``key`` (again: a no-op)."""
        if key in self._calls:
            return
        self._calls[key] = (source, now)
        self._per_source[source] += 1

    def release(self, key: CallKey) -> bool:
        """The call ended; False when it was not held (already released, or not ours)."""
        entry = self._calls.pop(key, None)
        if entry is None:
            return False
        source = entry[0]
        self._per_source[source] -= 1
        if self._per_source[source] <= 0:
            del self._per_source[source]
        return True

    def stale(self, now: float, min_age: float, limit: int = 500) -> list[CallKey]:
        """Up to ``limit`` calls held at least ``min_age`` seconds, oldest first: candidates
        for a check that their session still exists."""
        out: list[CallKey] = []
        for key, (_, since) in self._calls.items():
            if now - since < min_age or len(out) >= limit:
                break
            out.append(key)
        return out

    def checked(self, key: CallKey, now: float) -> None:
        """``key``'s session still exists: check it again only after ``min_age``."""
        entry = self._calls.get(key)
        if entry is not None:
            self._calls[key] = (entry[0], now)
            self._calls.move_to_end(key)

    @property
    def sources(self) -> int:
        return len(self._per_source)

    def __contains__(self, key: object) -> bool:
        return key in self._calls

    def __len__(self) -> int:
        return len(self._calls)


class MediaCapacity:
    """Free legs on the media nodes, from their reports (``free capacity beat`` per node,
    then ``key=value`` fields for operators that are not read here; a node falling behind
    reports 0 free; ``beat`` changes at every heartbeat, so a report that stops changing is
    from a node that is gone, without comparing clocks across machines)."""

    def __init__(self, stale_after: float = 5.0, peak_hold: float = 300.0) -> None:
        self.stale_after = stale_after
        self.peak_hold = peak_hold
        self._peak = (0, 0.0)  # the highest capacity seen, and when it was last seen
        self._nodes: dict[str, tuple[int, int, str, float]] = {}  # free, capacity, beat, seen
        # the calls admitted since the last report, and before it since the one before (that
        # report may have been written before their legs were taken), still not released
        self._admitted: tuple[set[CallKey], set[CallKey]] = (set(), set())
        self._now = 0.0

    def observe(self, reports: Mapping[str, str], now: float) -> None:
        nodes = {}
        for name, text in reports.items():
            parts = text.split()
            if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
                continue
            free, capacity, beat = int(parts[0]), int(parts[1]), parts[2]
            old = self._nodes.get(name)
            seen = old[3] if old is not None and old[2] == beat else now
            nodes[name] = (free, capacity, beat, seen)
        self._nodes = nodes
        self._admitted = (set(), self._admitted[0])
        self._now = now
        capacity = self.capacity
        if capacity >= self._peak[0] or now - self._peak[1] > self.peak_hold:
            self._peak = (capacity, now)

    @property
    def peak(self) -> int:
        """The highest capacity of the live nodes in the last ``peak_hold`` seconds: a node
        that stalls or restarts for a moment does not shrink every source's share."""
        return max(self._peak[0], self.capacity)

    def _live(self) -> list[tuple[int, int, str, float]]:
        return [n for n in self._nodes.values() if self._now - n[3] <= self.stale_after]

    @property
    def known(self) -> bool:
        """Some live media node reports its capacity."""
        return bool(self._live())

    @property
    def capacity(self) -> int:
        return sum(n[1] for n in self._live())

    @property
    def free(self) -> int:
        """Free legs now, estimated: as reported, minus the live calls admitted since."""
        return sum(n[0] for n in self._live()) - sum(map(len, self._admitted))

    def admitted(self, key: CallKey) -> None:
        self._admitted[0].add(key)

    def released(self, key: CallKey) -> None:
        """The call ``key`` ended: if the reports are not sure to reflect its leg yet, it no
        longer counts against them. Once they are, the report after its leg is freed gives
        the leg back, not this."""
        self._admitted[0].discard(key)
        self._admitted[1].discard(key)


class Admission:
    """Whether a new INVITE from a source may become a call.

    ``max_per_source``: calls one source may hold; 0 for no limit; ``None`` (the default):
    ``share`` of the legs the live media nodes had at most in the last ``peak_hold`` seconds
    (at least ``floor``), or ``fallback`` while no media node reports. The media reserve
    guards what is really left when a node goes away; the share does not shrink with it, or
    a source whose calls were fine before a node stalled would be refused for it.
    ``reserve``: new calls are shed while the media nodes have
    this many free legs or fewer (``None``: 2 % of the capacity, at least 2; 0: never).
    """

    def __init__(
        self,
        max_per_source: int | None = None,
        *,
        share: float = 1 / 3,
        floor: int = 4,
        fallback: int = 250,
        reserve: int | None = None,
        retry_after: int = 5,
    ) -> None:
        self.max_per_source = max_per_source
        self.share = share
        self.floor = floor
        self.fallback = fallback
        self.reserve = reserve
        self.retry_after = retry_after
        self.calls = SourceCalls()
        self.media = MediaCapacity()

    def limit(self) -> int:
        """Calls one source may hold now (0: no limit)."""
        if self.max_per_source is not None:
            return self.max_per_source
        if not self.media.known:
            return self.fallback
        return max(self.floor, math.ceil(self.media.peak * self.share))

    def media_reserve(self) -> int:
        if self.reserve is not None:
            return self.reserve
        return max(2, self.media.capacity // 50)

    def check(self, source: str) -> Shed | None:
        """None when a new call from ``source`` may go on."""
        limit = self.limit()
        if limit and self.calls.held(source) >= limit:
            return Shed(
                "source-calls",
                f"Too many calls from your address ({limit})",
                self.retry_after,
            )
        reserve = self.media_reserve()
        if reserve and self.media.known and self.media.free <= reserve:
            return Shed("media-capacity", "Out of media capacity", self.retry_after)
        return None

    def admit(self, key: CallKey, source: str, now: float) -> None:
        if key not in self.calls:
            self.media.admitted(key)
        self.calls.admit(key, source, now)

    def release(self, key: CallKey) -> bool:
        self.media.released(key)
        return self.calls.release(key)


class AuthThrottle:
    """Failed digest answers per source: ``max_failures`` within ``window`` seconds lock the
    source out for ``lockout`` seconds. At most ``max_sources`` are tracked (least recently
    failed dropped first), so a scan from many addresses cannot grow memory without bound."""

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        lockout: float = 60.0,
        max_sources: int = 10_000,
    ) -> None:
        if max_failures < 1 or window <= 0 or lockout < 0:
            raise ValueError("max_failures must be >= 1, window > 0, lockout >= 0")
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_sources = max_sources
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()  # source -> until, in order

    def locked(self, source: str, now: float) -> float:
        """Seconds left of ``source``'s lockout (0.0: not locked)."""
        until = self._locked.get(source)
        if until is None:
            return 0.0
        if now >= until:
            del self._locked[source]
            return 0.0
        return until - now

    def failed(self, source: str, now: float) -> bool:
        """Count one failure; True when it locks the source out."""
        times = [t for t in self._failures.pop(source, []) if now - t < self.window]
        times.append(now)
        if len(times) >= self.max_failures:
            self._locked.pop(source, None)
            self._locked[source] = now + self.lockout
            if len(self._locked) > self.max_sources:
                self._locked.popitem(last=False)
            return True
        self._failures[source] = times
        if len(self._failures) > self.max_sources:
            self._failures.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked)
