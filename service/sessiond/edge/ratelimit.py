"""Per-source admission control for new requests: a token bucket per source address.

Sans-I/O: ``allow(source, now)`` says whether one more new request (INVITE, or any request
that would start a transaction) from ``source`` may be admitted. A refused request is answered
503 with ``Retry-After`` by the edge, statelessly, and never reaches Redis. Buckets are kept for
the most recent ``max_sources`` addresses only, so a scan from many addresses cannot grow
memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict


class SourceRateLimiter:
    def __init__(self, rate: float, burst: float, max_sources: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, source: str, now: float) -> bool:
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, source: str) -> int:
        """Whole seconds until the source has a token again (at least 1)."""
        tokens, _ = self._buckets.get(source, (0.0, 0.0))
        return max(1, int((1.0 - tokens) / self.rate + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)
