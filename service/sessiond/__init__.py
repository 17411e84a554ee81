"""sessiond: a Redis-backed distributed SIP session service driven by state tables.

The call-control API (``SimplePeer``, ``Client``, the events and errors) is importable from
here; it is loaded on first use, so the service processes do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sessiond.api import (
        Answered,
        Call,
        CallEnded,
        CallError,
        CallEvent,
        CallFailed,
        CallRejected,
        CallTimeout,
        Client,
        DtmfReceived,
        Ended,
        Established,
        EventStream,
        Failed,
        IncomingCall,
        Invitation,
        MediaReady,
        PlayFinished,
        RecordingStopped,
        Ringing,
        SessiondError,
        SessionNotFound,
        SimplePeer,
    )

__all__ = [
    "Answered",
    "Call",
    "CallEnded",
    "CallError",
    "CallEvent",
    "CallFailed",
    "CallRejected",
    "CallTimeout",
    "Client",
    "DtmfReceived",
    "Ended",
    "Established",
    "EventStream",
    "Failed",
    "IncomingCall",
    "Invitation",
    "MediaReady",
    "PlayFinished",
    "RecordingStopped",
    "Ringing",
    "SessionNotFound",
    "SessiondError",
    "SimplePeer",
]
_API = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _API:
        from sessiond import api

        return getattr(api, name)
    raise AttributeError(f"module 'sessiond' has no attribute {name!r}")
