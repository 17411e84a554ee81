"""Prometheus metrics of the media process (served by :func:`sessiond.core.metrics.serve`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LEGS = Gauge("sessiond_media_legs", "RTP legs open on this media node")
PORTS_FREE = Gauge("sessiond_media_ports_free", "RTP port pairs free on this media node")
COMMANDS = Counter(
    "sessiond_media_commands_total", "Media commands by type and outcome", ["type", "status"]
)
EVENTS = Counter("sessiond_media_events_total", "Events published by the media node", ["type"])
PACKETS = Counter("sessiond_media_packets_total", "RTP/RTCP datagrams", ["direction"])
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
