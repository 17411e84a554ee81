"""Prometheus metrics of every sessiond process, served over HTTP by ``serve()``.

Counters are per process; Prometheus sums them. ``sessiond_sessions`` is a gauge moved up
when a worker moves a session into a state and down when one moves it out: summed over all
workers it is the number of sessions per state, exact as long as no worker restarts (a
restart loses that worker's share; ``sessiond ctl list`` counts from Redis).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

# No ``*_created`` series: a timestamp per counter and histogram child that doubles the
# series count and that no rule or dashboard of ours reads.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client 0.26

EVENTS = Counter("sessiond_events_total", "Events handled by workers", ["type", "status"])
TRANSITION_SECONDS = Histogram(
    "sessiond_transition_seconds",
    "From reading an event batch to having stored and emitted it, per event",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONFLICTS = Counter("sessiond_cas_conflicts_total", "Compare-and-set conflicts (re-decided)")
DUPLICATES = Counter("sessiond_duplicates_total", "Events refused as already applied")
RECLAIMED = Counter("sessiond_reclaimed_total", "Stream entries taken over from dead workers")
TIMERS = Counter("sessiond_timers_fired_total", "Timers moved into the event streams")
PARTITIONS = Gauge("sessiond_partitions_held", "Event partitions a worker reads", ["worker"])
STREAM_LAG = Gauge("sessiond_stream_lag", "Entries not yet delivered to the group", ["stream"])
STREAM_PENDING = Gauge("sessiond_stream_pending", "Entries delivered, not acked", ["stream"])
SESSIONS = Gauge("sessiond_sessions", "Sessions per state (sum over workers)", ["state"])
CALLS = Counter("sessiond_calls_total", "Calls by outcome", ["outcome"])
SIP_MESSAGES = Counter(
    "sessiond_sip_messages_total", "SIP messages at the edge", ["direction", "kind"]
)
SIP_DROPPED = Counter("sessiond_sip_dropped_total", "Unparseable or refused datagrams", ["why"])
EDGE_LOOP_ERRORS = Counter(
    "sessiond_edge_loop_errors_total",
    "Exceptions an edge loop caught and survived (logged once per loop and kind)",
    ["loop"],
)
REGISTERED = Gauge("sessiond_registered", "1 while our registration of the AOR holds", ["aor"])
REGISTER_RESPONSES = Counter(
    "sessiond_register_responses_total", "Final responses to our REGISTERs", ["aor", "code"]
)
KEEPALIVE_RTT = Gauge(
    "sessiond_keepalive_rtt_seconds", "Round trip of the last answered OPTIONS", ["target"]
)
KEEPALIVE_FAILURES = Counter(
    "sessiond_keepalive_failures_total", "OPTIONS keepalives with no answer", ["target"]
)
KEEPALIVE_REACHABLE = Gauge(
    "sessiond_keepalive_reachable", "1 when the last OPTIONS keepalive was answered", ["target"]
)
AUTH_FAILURES = Counter(
    "sessiond_edge_auth_failures_total", "Wrong digest answers to the edge's challenges"
)
AUTH_LOCKOUTS = Counter(
    "sessiond_edge_auth_lockouts_total", "Sources locked out after repeated digest failures"
)
REGISTRAR_AUTH_FAILURES = Counter(
    "sessiond_registrar_auth_failures_total",
    "REGISTERs refused by the registrar's digest check, by reason (wrong-password, "
    "unknown-user, bad-nonce, algorithm, malformed, not-authorized, locked-out)",
    ["reason"],
)
REGISTRAR_BINDINGS = Counter(
    "sessiond_registrar_bindings_total",
    "Bindings of our registrar's AORs created, refreshed, removed (unregistered) or found "
    "expired by a REGISTER",
    ["change"],
)
REGISTRAR_CURRENT = Gauge(
    "sessiond_registrar_bindings_current",
    "Bindings held in the location store (all edges; counted by a scan every 30 s)",
)
REGISTRAR_AORS = Gauge(
    "sessiond_registrar_aors_current", "AORs with bindings in the location store (same scan)"
)
LOCATION_FAILOVER = Counter(
    "sessiond_location_failover_total",
    "Bindings whose edge was silent when a call looked them up: moved (UDP, called through "
    "a live edge) or skipped (a TCP/TLS connection that died with its edge)",
    ["action"],
)
CALLS_HELD = Gauge("sessiond_edge_calls_held", "Calls the edge counts against their sources")
MEDIA_FREE = Gauge("sessiond_edge_media_free", "Free media legs as the edge estimates them")

# published application events -> call outcome
OUTCOMES = {"IncomingCall": "started", "Answered": "answered", "Failed": "failed", "Ended": "ended"}


@lru_cache(maxsize=4096)
def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: ``labels()`` takes a lock and builds a key
    on every call, and the hot loops count every message and event. Bounded, because some
    label values come from peers (an evicted child is found again by ``labels()``)."""
    return metric.labels(*values)


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics in a background thread (port 0: do not serve)."""
    if port:
        start_http_server(port, addr=address)
