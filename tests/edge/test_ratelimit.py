"""The per-source token bucket (sans-I/O, fake clock)."""

from __future__ import annotations

import pytest

from sessiond.edge.ratelimit import SourceRateLimiter


def test_burst_then_rate() -> None:
    limiter = SourceRateLimiter(rate=2, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a") == 1
    assert limiter.allow("a", 0.5)  # one token back after 1/rate seconds
    assert not limiter.allow("a", 0.5)
    assert limiter.allow("b", 0.5)  # sources are independent


def test_memory_is_bounded_under_a_scan() -> None:
    limiter = SourceRateLimiter(rate=1, burst=1, max_sources=100)
    for n in range(10_000):
        limiter.allow(f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(limiter) == 100


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        SourceRateLimiter(rate=0, burst=1)
