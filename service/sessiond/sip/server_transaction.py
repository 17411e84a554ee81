"""Server transactions (RFC 3261 17.2; RFC 6026 for the INVITE "Accepted" state).

Theory of operation
-------------------
A server transaction owns one incoming request. :meth:`start` returns what happens on
arrival: the request for the TU, and for INVITE a ``100 Trying``. 17.2.1 lets the
INVITE transaction hold its 100 back while the TU is expected to answer within 200 ms:
with a ``trying_delay`` the 100 waits on timer ``100`` and goes out only if no response
has been sent when it fires (a retransmitted INVITE gets it at once, or the last response
sent); without one (the default) it goes out on arrival. The TU answers through
:meth:`respond`; retransmitted requests and ACKs come in through :meth:`receive_request`
and are absorbed, or answered with the last response.

INVITE (17.2.1, Figure 7 + RFC 6026)::

    Proceeding --1xx--> Proceeding                    (Timer 100: send 100 Trying)
       |--2xx--> Accepted --Timer L--> Terminated     (2xx retransmission: the dialog's job)
       \\--300-699--> Completed --ACK--> Confirmed --Timer I--> Terminated
                        |--Timer G: resend final (T1 doubling to T2, unreliable only)
                        \\--Timer H (64*T1): TimedOut, Terminated

Non-INVITE (17.2.2, Figure 8)::

    Trying --1xx--> Proceeding --final--> Completed --Timer J--> Terminated
      \\--final--> Completed

The TU answering in a state that does not allow it raises :class:`TransactionError`.

Responses go back to the address the request came from (the ``peer``; over the same
connection when reliable). That is RFC 3581 symmetric response routing, which is what
NAT traversal needs; the Via ``received``/``rport`` bookkeeping is left to the edge
(:meth:`Via.with_received`).
"""

from __future__ import annotations

from enum import StrEnum

from sessiond.sip.actions import (
    Action,
    Peer,
    RequestReceived,
    Send,
    StrayMessage,
    Terminated,
    TimedOut,
)
from sessiond.sip.errors import TransactionError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.timers import TimerConfig, TimerDriven


class ServerState(StrEnum):
    """States of Figures 7 and 8 (plus Accepted from RFC 6026)."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class ServerTransaction(TimerDriven):
    """Common machinery of both server transaction kinds."""

    def __init__(
        self,
        key: str,
        request: SipRequest,
        peer: Peer,
        reliable: bool,
        timers: TimerConfig,
        cancels: str | None = None,
    ) -> None:
        super().__init__(key, request, peer, reliable, timers)
        self.cancels = cancels
        self.state = ServerState.TRYING

    @property
    def terminated(self) -> bool:
        """True once the transaction may be forgotten."""
        return self.state is ServerState.TERMINATED

    @property
    def final_sent(self) -> bool:
        """True once a final response went out (CANCEL then no longer applies)."""
        return self.last_response is not None and self.last_response.status >= 200

    def abort(self) -> None:
        """Terminate at once (transport failure): no more timers or transmissions."""
        self.state = ServerState.TERMINATED
        self._deadlines.clear()

    def start(self, now: float) -> list[Action]:
        """Handle the request's first arrival."""
        raise NotImplementedError

    def receive_request(self, request: SipRequest, now: float) -> list[Action]:
        """Handle a retransmission (or, for INVITE, the ACK of a non-2xx response)."""
        raise NotImplementedError

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        """Send a response from the TU."""
        raise NotImplementedError

    def _send(self, response: SipResponse) -> Send:
        self.last_response = response
        return Send(response, self.peer, self.key)

    def _resend(self) -> list[Action]:
        if self.last_response is None:
            return []
        return [Send(self.last_response, self.peer, self.key)]

    def _terminate(self) -> list[Action]:
        self.state = ServerState.TERMINATED
        self._deadlines.clear()
        return [Terminated(self.key)]

    def _linger(self, name: str, now: float, delay: float) -> list[Action]:
        if self.reliable:
            return self._terminate()
        self._deadlines.arm(name, now + delay)
        return []

    def _check_response(self, response: SipResponse) -> None:
        if response.cseq != self.request.cseq or response.branch != self.request.branch:
            raise TransactionError("response does not belong to this transaction")


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 17.2.1 with the RFC 6026 Accepted state.

    ``trying_delay`` (seconds, at most 0.2 for 17.2.1; set before :meth:`start`): how long
    the 100 Trying waits for a response from the TU before going out on its own; 0 sends it
    on arrival.
    """

    trying_delay = 0.0

    def start(self, now: float) -> list[Action]:
        """Enter Proceeding, hand the INVITE to the TU and send 100 Trying, at once or when
        timer ``100`` fires without a response sent."""
        self.state = ServerState.PROCEEDING
        received = RequestReceived(self.key, self.request, self.peer)
        if self.trying_delay > 0:
            self._deadlines.arm("100", now + self.trying_delay)
            return [received]
        return [self._trying(), received]

    def _trying(self) -> Send:
        self._deadlines.cancel("100")
        return self._send(make_response(self.request, 100))

    def receive_request(self, request: SipRequest, now: float) -> list[Action]:
        """A retransmitted INVITE, or the ACK for a non-2xx final response (17.2.3)."""
        if request.method == "ACK":
            if self.state is ServerState.ACCEPTED:
                return [StrayMessage(request, self.peer)]  # RFC 6026 7.1: ACK to the TU
            if self.state is not ServerState.COMPLETED:
                return []  # Confirmed absorbs ACK retransmissions
            self.state = ServerState.CONFIRMED
            self._deadlines.cancel("G", "H")
            return self._linger("I", now, self.timers.t4)
        if self.state is ServerState.PROCEEDING and self.last_response is None:
            return [self._trying()]  # retransmitted before timer 100: the 100 now
        if self.state in (ServerState.PROCEEDING, ServerState.COMPLETED):
            return self._resend()
        return []  # Accepted / Confirmed: absorbed

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        """Send a response from the TU (17.2.1)."""
        self._check_response(response)
        if self.state is ServerState.ACCEPTED and 200 <= response.status < 300:
            return [self._send(response)]  # a 2xx retransmission by the dialog layer
        if self.state is not ServerState.PROCEEDING:
            raise TransactionError(f"cannot send {response.status} in state {self.state}")
        self._deadlines.cancel("100")  # a response went out: no 100 Trying needed
        if response.status < 200:
            return [self._send(response)]
        if response.status < 300:
            self.state = ServerState.ACCEPTED
            self._deadlines.arm("L", now + self.timers.timeout)
            return [self._send(response)]
        self.state = ServerState.COMPLETED
        if not self.reliable:
            self._deadlines.arm("G", now + self.timers.t1)
        self._deadlines.arm("H", now + self.timers.timeout)
        return [self._send(response)]

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "100":
            return [self._trying()] if self.last_response is None else []
        if name == "G":
            self._interval = min(self._interval * 2, self.timers.t2)
            self._deadlines.arm("G", now + self._interval)
            return self._resend()
        if name == "H":
            return [TimedOut(self.key, "H"), *self._terminate()]
        return self._terminate()  # I or L


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 17.2.2."""

    def start(self, now: float) -> list[Action]:
        """Enter Trying and hand the request to the TU."""
        self.state = ServerState.TRYING
        return [RequestReceived(self.key, self.request, self.peer, self.cancels)]

    def receive_request(self, request: SipRequest, now: float) -> list[Action]:
        """A retransmission: absorbed in Trying, answered with the last response later."""
        if self.state in (ServerState.PROCEEDING, ServerState.COMPLETED):
            return self._resend()
        return []

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        """Send a response from the TU (17.2.2)."""
        self._check_response(response)
        if self.state not in (ServerState.TRYING, ServerState.PROCEEDING):
            raise TransactionError(f"cannot send {response.status} in state {self.state}")
        if response.status < 200:
            self.state = ServerState.PROCEEDING
            return [self._send(response)]
        self.state = ServerState.COMPLETED
        return [self._send(response), *self._linger("J", now, self.timers.timeout)]

    def _fire(self, name: str, now: float) -> list[Action]:
        return self._terminate()  # J
