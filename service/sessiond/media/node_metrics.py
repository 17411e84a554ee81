"""Prometheus metrics of the media process (served by :func:`sessiond.core.metrics.serve`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LEGS = Gauge("sessiond_media_legs", "RTP legs open on this media node")
PORTS_FREE = Gauge("sessiond_media_ports_free", "RTP port pairs free on this media node")
COMMANDS = Counter(
    "sessiond_media_commands_total", "Media commands by type and outcome", ["type", "status"]
)
EVENTS = Counter("sessiond_media_events_total", "Events published by the media node", ["type"])
PACKETS = Counter("sessiond_media_packets_total", "RTP/RTCP datagrams", ["direction"])
SRTP_ERRORS = Counter(
    "sessiond_media_srtp_errors_total",
    "SRTP/SRTCP packets libsrtp refused and the leg dropped, by direction (in, out) and "
    "reason (auth, replay, malformed)",
    ["direction", "reason"],
)
TICK_SECONDS = Histogram(
    "sessiond_media_tick_seconds",
    "Time to tick every leg once (the budget is 20 ms)",
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.05),
)
TICKS_LATE = Counter(
    "sessiond_media_ticks_late_total", "Ticks that started more than one period late"
)
TICKS_SKIPPED = Counter(
    "sessiond_media_ticks_skipped_total", "Ticks dropped to catch up after a long stall"
)

TICK_BUSY = Gauge(
    "sessiond_media_tick_busy",
    "Share of the time spent ticking legs since the last heartbeat (1: the 20 ms budget used)",
)
OVERLOADED = Gauge(
    "sessiond_media_overloaded",
    "1 while the node reports itself full because its ticks fall behind (no new legs)",
)
LEGS_ASLEEP = Gauge(
    "sessiond_media_legs_asleep", "Legs with nothing to play, off the 20 ms tick (keepalive)"
)


def update_gauges(executor: Any, ports: Any, counted: tuple[int, int]) -> tuple[int, int]:
    """Set the legs and ports gauges and add the datagrams since ``counted`` (received,
    sent, as the previous call returned); the new totals."""
    legs = executor.legs.values()
    LEGS.set(len(legs))
    PORTS_FREE.set(ports.capacity - ports.in_use)
    received = executor.received + sum(leg.received for leg in legs)
    sent = executor.sent + sum(leg.sent for leg in legs)
    PACKETS.labels("in").inc(max(0, received - counted[0]))
    PACKETS.labels("out").inc(max(0, sent - counted[1]))
    return received, sent
