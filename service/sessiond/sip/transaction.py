"""The transaction layer: owns every transaction, matches messages to them (RFC 3261 17).

Theory of operation
-------------------
:class:`TransactionLayer` is sans-I/O. The adapter calls

* :meth:`~TransactionLayer.receive` with each parsed message, its source and whether it
  came over a reliable transport;
* :meth:`~TransactionLayer.send_request` / :meth:`~TransactionLayer.respond` for what
  the TU sends;
* :meth:`~TransactionLayer.handle_timer` when :meth:`~TransactionLayer.get_timer` is due;

and executes the returned actions (:mod:`sessiond.sip.actions`) in order.

Matching: a response matches the client transaction of its top Via branch and CSeq
method (17.1.3). A request matches a server transaction by top Via branch, sent-by and
method, ACK counting as INVITE (17.2.3). A request that reuses a live transaction's branch
with another Call-ID, From tag or CSeq number is no retransmission of it (a broken client,
or RFC 4475's torture messages): it gets a transaction of its own, keyed by those fields
too (:meth:`TransactionLayer.key_for` finds either key). Requests without the RFC 3261
magic cookie (RFC 2543 clients, 8.1.1.7) fall back to the old rules of 17.2.3: the key
holds the whole top Via, From tag, Call-ID, CSeq number and method (all a response carries,
so the TU's answer finds its transaction from the response's header fields alone), and a
request hitting it must also have the transaction's Request-URI and To tag -- for an ACK,
the To tag of the response sent. An RFC 2543 request that hits a transaction but fails those
checks is a merged request (8.2.2.2) and is answered 482; such an ACK is stray. A CANCEL
gets its own transaction and names the INVITE server transaction it targets (9.2), matched
the same way. A message matching nothing is a :class:`StrayMessage` when it is an ACK or a
response (the dialog layer owns ACKs for 2xx and 2xx retransmissions), or a new server
transaction.
"""

from __future__ import annotations

import heapq
import secrets

from sessiond.sip.actions import Action, Peer, Send, StrayMessage, Terminated, TimedOut
from sessiond.sip.client_transaction import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from sessiond.sip.errors import TransactionError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.server_transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from sessiond.sip.timers import TimerConfig
from sessiond.sip.via import is_rfc3261_branch


def client_key(message: SipRequest | SipResponse) -> str:
    """Client transaction id: top Via branch + CSeq method (17.1.3)."""
    method = message.cseq.method if message.cseq else ""
    return f"c|{message.branch}|{method}"


def server_key(request: SipRequest, *, method: str | None = None) -> str:
    """Server transaction id (17.2.3); ACK maps to its INVITE, CANCEL stays CANCEL."""
    m = method or ("INVITE" if request.method == "ACK" else request.method)
    via = request.top_via
    sent_by = f"{via.host.lower()}:{via.port or ''}" if via else ""
    branch = request.branch
    if is_rfc3261_branch(branch):
        return f"s|{branch}|{sent_by}|{m}"
    # RFC 2543 fallback (17.2.3): top Via, From tag, Call-ID, CSeq number; the Request-URI
    # and To tag are checked on a match (rfc2543_matches).
    seq = request.cseq.seq if request.cseq else ""
    return f"s2543|{via}|{request.from_tag or ''}|{request.call_id}|{seq}|{m}"


def _identity(request: SipRequest) -> tuple[str | None, str | None, int | None]:
    """What a retransmission, the ACK of a non-2xx and a CANCEL share with their request."""
    return request.call_id, request.from_tag, request.cseq.seq if request.cseq else None


def answers(response: SipResponse, request: SipRequest) -> bool:
    """True when ``response`` was built for ``request`` (its Call-ID, From tag and CSeq):
    a stored answer found by branch alone may belong to a request that reused the branch."""
    return (response.call_id, response.from_tag, response.cseq) == (
        request.call_id,
        request.from_tag,
        request.cseq,
    )


def rfc2543_matches(tx: ServerTransaction, request: SipRequest) -> bool:
    """The checks of 17.2.3 for RFC 2543 requests that the key leaves out: the same
    Request-URI, and the same To tag -- for an ACK, the To tag of the response we sent."""
    if not tx.key.startswith("s2543|"):
        return True
    if request.uri != tx.request.uri:
        return False
    if request.method == "ACK" and tx.last_response is not None:
        return request.to_tag == tx.last_response.to_tag
    return request.to_tag == tx.request.to_tag


class TransactionLayer:
    """Every client and server transaction of one edge, keyed as RFC 3261 17 says."""

    def __init__(self, timers: TimerConfig | None = None, *, trying_delay: float = 0.0) -> None:
        self.timers = timers or TimerConfig()
        # how long an INVITE server transaction holds its 100 Trying back (17.2.1)
        self.trying_delay = trying_delay
        self.clients: dict[str, ClientTransaction] = {}
        self.servers: dict[str, ServerTransaction] = {}
        self._heap: list[tuple[float, str]] = []

    # -- TU side ---------------------------------------------------------------------
    def send_request(
        self, request: SipRequest, peer: Peer, now: float, *, reliable: bool = False
    ) -> tuple[str, list[Action]]:
        """Start a client transaction for ``request`` (which must carry its own Via).

        Returns the transaction key (responses will carry it) and the actions.
        ACK for 2xx is not a transaction: send it directly (see :mod:`dialog`).
        """
        if request.method == "ACK":
            raise TransactionError("ACK for 2xx is sent by the dialog, not a transaction")
        if not is_rfc3261_branch(request.branch):
            raise TransactionError("requests we send need an RFC 3261 branch")
        key = client_key(request)
        if key in self.clients:
            raise TransactionError(f"duplicate client transaction {key}")
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        tx = cls(key, request, peer, reliable, self.timers)
        self.clients[key] = tx
        return key, self._track(tx, tx.start(now), now)

    def respond(self, key: str, response: SipResponse, now: float) -> list[Action]:
        """Send ``response`` through server transaction ``key``."""
        tx = self.servers.get(key)
        if tx is None:
            raise TransactionError(f"no server transaction {key}")
        return self._track(tx, tx.respond(response, now), now)

    def key_for(self, request: SipRequest, *, method: str | None = None) -> str:
        """The server transaction key of ``request`` (as received, or rebuilt from the header
        fields a response copies): :func:`server_key`, or, when a live transaction holds
        that key for another request (same branch, other Call-ID, From tag or CSeq number),
        the key extended by those fields."""
        key = server_key(request, method=method)
        if not key.startswith("s|"):
            return key
        tx = self.servers.get(key)
        if tx is not None and _identity(tx.request) == _identity(request):
            return key
        call_id, from_tag, seq = _identity(request)
        other = f"{key}|{call_id}|{from_tag or ''}|{seq}"
        return other if tx is not None or other in self.servers else key

    def cancel_target(self, key: str) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL transaction ``key`` refers to, if alive."""
        tx = self.servers.get(key)
        target = tx.cancels if tx is not None else None
        return self.servers.get(target) if target else None

    # -- network side ----------------------------------------------------------------
    def receive(
        self, message: SipRequest | SipResponse, peer: Peer, now: float, *, reliable: bool = False
    ) -> list[Action]:
        """Dispatch a parsed message from ``peer`` to its transaction (or create one)."""
        if isinstance(message, SipResponse):
            client = self.clients.get(client_key(message))
            if client is None:
                return [StrayMessage(message, peer)]
            return self._track(client, client.receive_response(message, now), now)
        key = self.key_for(message)
        server = self.servers.get(key)
        if server is not None and not rfc2543_matches(server, message):
            if message.method == "ACK":
                return [StrayMessage(message, peer)]
            merged = make_response(message, 482, "Loop Detected", to_tag=secrets.token_hex(5))
            return [Send(merged, peer, key)]  # 8.2.2.2, statelessly
        if server is not None:
            return self._track(server, server.receive_request(message, now), now)
        if message.method == "ACK":
            return [StrayMessage(message, peer)]
        return self._new_server(key, message, peer, reliable, now)

    def _new_server(
        self, key: str, request: SipRequest, peer: Peer, reliable: bool, now: float
    ) -> list[Action]:
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(key, request, peer, reliable, self.timers)
            tx.trying_delay = self.trying_delay
        else:
            cancels = None
            if request.method == "CANCEL":
                target = self.key_for(request, method="INVITE")
                invite = self.servers.get(target)
                if invite is not None and rfc2543_matches(invite, request):
                    cancels = target
            tx = NonInviteServerTransaction(key, request, peer, reliable, self.timers, cancels)
        self.servers[key] = tx
        return self._track(tx, tx.start(now), now)

    def transport_error(self, key: str) -> list[Action]:
        """The adapter could not send for transaction ``key`` (17.1.4 / 17.2.4).

        The transaction is terminated; a client transaction reports ``TimedOut(key,
        "transport")`` so the TU treats it like a 503.
        """
        tx = self._lookup(key)
        if tx is None:
            return []
        self.clients.pop(key, None)
        self.servers.pop(key, None)
        tx.abort()
        out: list[Action] = []
        if isinstance(tx, ClientTransaction):
            out.append(TimedOut(key, "transport"))
        return [*out, Terminated(key)]

    # -- timers ----------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has work to do (never late). An entry a
        transaction has outgrown (its timer was stopped or moved later: a response stopped
        Timer A or E, an answer came before the 100 Trying was due) is dropped or moved to
        the transaction's own next deadline here, so it costs no wake-up."""
        heap = self._heap
        while heap:
            when, key = heap[0]
            tx = self._lookup(key)
            due = tx.get_timer() if tx is not None else None
            if due is None:
                heapq.heappop(heap)
            elif due > when:
                heapq.heapreplace(heap, (due, key))
            else:
                return when
        return None

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every transaction timer due at ``now``."""
        out: list[Action] = []
        while self._heap and self._heap[0][0] <= now:
            _, key = heapq.heappop(self._heap)
            tx = self._lookup(key)
            if tx is None:
                continue
            due = tx.get_timer()
            if due is not None and due <= now:
                out += self._track(tx, tx.handle_timer(now), now)
        return out

    def _lookup(self, key: str) -> ClientTransaction | ServerTransaction | None:
        return self.clients.get(key) or self.servers.get(key)

    def _track(
        self, tx: ClientTransaction | ServerTransaction, actions: list[Action], now: float
    ) -> list[Action]:
        """Forget terminated transactions; schedule the next timer of live ones."""
        if tx.terminated:
            self.clients.pop(tx.key, None)
            self.servers.pop(tx.key, None)
            if not any(isinstance(a, Terminated) for a in actions):
                actions.append(Terminated(tx.key))
            return actions
        due = tx.get_timer()
        if due is not None:
            heapq.heappush(self._heap, (due, tx.key))
        return actions
