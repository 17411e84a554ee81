"""The edge's SIP message counters, with bounded label sets."""

from __future__ import annotations

from sessiond.core import metrics
from sessiond.sip.message import SipRequest, SipResponse

# Methods counted under their own name; any other token a peer sends counts as "other", so
# the metric's label set stays bounded.
_COUNTED_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER UPDATE REFER NOTIFY SUBSCRIBE INFO PRACK MESSAGE "
    "PUBLISH".split()
)


def kind(msg: SipRequest | SipResponse) -> str:
    if isinstance(msg, SipRequest):
        return msg.method if msg.method in _COUNTED_METHODS else "other"
    return str(msg.status)


def count(direction: str, kind: str) -> None:
    """Count one SIP message in ``sessiond_sip_messages_total``."""
    metrics.child(metrics.SIP_MESSAGES, direction, kind).inc()


def dropped(why: str) -> None:
    """Count one message refused or dropped in ``sessiond_sip_dropped_total``."""
    metrics.child(metrics.SIP_DROPPED, why).inc()
