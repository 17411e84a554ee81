"""What the sans-I/O transaction and dialog layers ask their I/O adapter to do.

Every method of those layers returns a list of these, in order: messages to transmit,
messages and notices for the transaction user (TU), and transaction lifecycle events.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessiond.sip.message import SipRequest, SipResponse

#: Where a message goes or came from: ``(host, port)``; the adapter maps it to a socket.
Peer = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Send:
    """Transmit ``message`` to ``peer`` (over the connection to it, when reliable)."""

    message: SipRequest | SipResponse
    peer: Peer
    key: str = ""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. ``cancels`` is the INVITE transaction a CANCEL targets."""

    key: str
    request: SipRequest
    peer: Peer
    cancels: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU, from the client transaction ``key``."""

    key: str
    response: SipResponse


@dataclass(frozen=True, slots=True)
class StrayMessage:
    """A message no transaction matches: an ACK for a 2xx, or a 2xx retransmission.

    These belong to the dialog layer (RFC 3261 13.2.2.4, 13.3.1.4).
    """

    message: SipRequest | SipResponse
    peer: Peer


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The transaction ``key`` gave up (timer B, F or H): report 408 / failure to the TU."""

    key: str
    timer: str


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction ``key`` reached the Terminated state and was forgotten."""

    key: str


Action = Send | RequestReceived | ResponseReceived | StrayMessage | TimedOut | Terminated
