"""Client transactions (RFC 3261 17.1; RFC 6026 for the INVITE "Accepted" state).

Theory of operation
-------------------
A client transaction owns one outgoing request. :meth:`start` returns the first
transmission; :meth:`receive_response` takes a matching response; :meth:`handle_timer`
fires due timers. Each returns a list of actions (:mod:`sessiond.sip.actions`). Time is
always passed in (``now``, seconds on any monotonic clock).

INVITE (17.1.1, Figure 5 + RFC 6026)::

    Calling --1xx--> Proceeding --2xx--> Accepted --Timer M--> Terminated
       |  \\--2xx-> Accepted      \\--300-699 (send ACK)--> Completed --Timer D--> Terminated
       |--300-699 (send ACK)--> Completed
       \\--Timer B--> Terminated (TimedOut)

Timer A retransmits the INVITE in Calling (T1, doubling) on unreliable transports only.
ACKs for 2xx are *not* built here: they belong to the dialog (13.2.2.4); 2xx
retransmissions are handed to the TU while Accepted so it can re-send its ACK.

Non-INVITE (17.1.2, Figure 6)::

    Trying --1xx--> Proceeding --final--> Completed --Timer K--> Terminated
      \\--final--> Completed;   Trying/Proceeding --Timer F--> Terminated (TimedOut)

Timer E retransmits (T1 doubling to T2 in Trying, T2 in Proceeding), unreliable only.
"""

from __future__ import annotations

from enum import StrEnum

from sessiond.sip.actions import Action, Peer, ResponseReceived, Send, Terminated, TimedOut
from sessiond.sip.errors import TransactionError
from sessiond.sip.headers import Headers
from sessiond.sip.message import SipRequest, SipResponse
from sessiond.sip.timers import TimerConfig, TimerDriven


class ClientState(StrEnum):
    """States of Figures 5 and 6 (plus Accepted from RFC 6026)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    TERMINATED = "terminated"


def build_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """ACK for a non-2xx final response (17.1.1.3): same transaction, To from the response."""
    if request.top_via is None or request.cseq is None:
        raise TransactionError("cannot ACK a request without Via and CSeq")
    headers = [
        ("Via", str(request.top_via)),
        ("From", request.headers.get("from") or ""),
        ("To", response.headers.get("to") or ""),
        ("Call-ID", request.call_id or ""),
        ("CSeq", f"{request.cseq.seq} ACK"),
        ("Max-Forwards", "70"),
    ]
    headers += [("Route", r) for r in request.headers.get_all("route")]
    return SipRequest.create("ACK", request.uri, headers)


def build_cancel(request: SipRequest) -> SipRequest:
    """CANCEL for a pending request (9.1): same Request-URI, Call-ID, From, To, top Via, CSeq."""
    if request.top_via is None or request.cseq is None:
        raise TransactionError("cannot CANCEL a request without Via and CSeq")
    headers = [
        ("Via", str(request.top_via)),
        ("From", request.headers.get("from") or ""),
        ("To", request.headers.get("to") or ""),
        ("Call-ID", request.call_id or ""),
        ("CSeq", f"{request.cseq.seq} CANCEL"),
        ("Max-Forwards", "70"),
    ]
    headers += [("Route", r) for r in request.headers.get_all("route")]
    return SipRequest.create("CANCEL", request.uri, Headers.of(headers))


class ClientTransaction(TimerDriven):
    """Common machinery of both client transaction kinds."""

    def __init__(
        self, key: str, request: SipRequest, peer: Peer, reliable: bool, timers: TimerConfig
    ) -> None:
        super().__init__(key, request, peer, reliable, timers)
        self.state = ClientState.TERMINATED

    @property
    def terminated(self) -> bool:
        """True once the transaction may be forgotten."""
        return self.state is ClientState.TERMINATED

    def abort(self) -> None:
        """Terminate at once (transport failure): no more timers or transmissions."""
        self.state = ClientState.TERMINATED
        self._deadlines.clear()

    def start(self, now: float) -> list[Action]:
        """Send the request for the first time."""
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        """Process a response matched to this transaction."""
        raise NotImplementedError

    def _send(self, message: SipRequest | SipResponse) -> Send:
        return Send(message, self.peer, self.key)

    def _terminate(self) -> list[Action]:
        self.state = ClientState.TERMINATED
        self._deadlines.clear()
        return [Terminated(self.key)]

    def _linger(self, name: str, now: float, delay: float) -> list[Action]:
        """Wait ``delay`` to absorb retransmissions (0 on reliable transports)."""
        if self.reliable or delay <= 0:
            return self._terminate()
        self._deadlines.arm(name, now + delay)
        return []


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 17.1.1 with the RFC 6026 Accepted state."""

    def start(self, now: float) -> list[Action]:
        """Send the INVITE; arm timers A (unreliable only) and B."""
        if self.state is not ClientState.TERMINATED or self.last_response is not None:
            raise TransactionError("transaction already started")
        self.state = ClientState.CALLING
        if not self.reliable:
            self._deadlines.arm("A", now + self.timers.t1)
        self._deadlines.arm("B", now + self.timers.timeout)
        return [self._send(self.request)]

    _ack: SipRequest | None = None

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        """Process a response matched to this transaction (17.1.1.2)."""
        state = self.state
        if state in (ClientState.CALLING, ClientState.PROCEEDING):
            self.last_response = response
            self._deadlines.cancel("A", "B")
            deliver: list[Action] = [ResponseReceived(self.key, response)]
            if response.status < 200:
                self.state = ClientState.PROCEEDING
                return deliver
            if response.status < 300:
                self.state = ClientState.ACCEPTED
                self._deadlines.arm("M", now + self.timers.timeout)
                return deliver
            self.state = ClientState.COMPLETED
            ack = build_ack(self.request, response)
            self._ack = ack
            return [self._send(ack), *deliver, *self._linger("D", now, 32.0)]
        if state is ClientState.COMPLETED and response.status >= 300 and self._ack:
            return [self._send(self._ack)]
        if state is ClientState.ACCEPTED and 200 <= response.status < 300:
            return [ResponseReceived(self.key, response)]
        return []

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "A":
            self._interval *= 2
            self._deadlines.arm("A", now + self._interval)
            return [self._send(self.request)]
        if name == "B":
            return [TimedOut(self.key, "B"), *self._terminate()]
        return self._terminate()  # D or M


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 17.1.2."""

    def start(self, now: float) -> list[Action]:
        """Send the request; arm timers E (unreliable only) and F."""
        if self.state is not ClientState.TERMINATED or self.last_response is not None:
            raise TransactionError("transaction already started")
        if self.request.method in ("INVITE", "ACK"):
            raise TransactionError(f"{self.request.method} needs no non-INVITE transaction")
        self.state = ClientState.TRYING
        if not self.reliable:
            self._deadlines.arm("E", now + self.timers.t1)
        self._deadlines.arm("F", now + self.timers.timeout)
        return [self._send(self.request)]

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        """Process a response matched to this transaction (17.1.2.2)."""
        if self.state not in (ClientState.TRYING, ClientState.PROCEEDING):
            return []  # Completed absorbs retransmissions of the final response
        self.last_response = response
        deliver: list[Action] = [ResponseReceived(self.key, response)]
        if response.status < 200:
            self.state = ClientState.PROCEEDING
            return deliver
        self.state = ClientState.COMPLETED
        self._deadlines.cancel("E", "F")
        return deliver + self._linger("K", now, self.timers.t4)

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "E":
            if self.state is ClientState.PROCEEDING:
                self._interval = self.timers.t2
            else:
                self._interval = min(self._interval * 2, self.timers.t2)
            self._deadlines.arm("E", now + self._interval)
            return [self._send(self.request)]
        if name == "F":
            return [TimedOut(self.key, "F"), *self._terminate()]
        return self._terminate()  # K
