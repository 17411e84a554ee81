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
method, ACK counting as INVITE (17.2.3); requests without the RFC 3261 magic cookie fall
back to the RFC 2543 fields (Request-URI, From tag, Call-ID, CSeq, top Via). A CANCEL gets
its own transaction and names the INVITE server transaction it targets (9.2). A message
matching nothing is a :class:`StrayMessage` when it is an ACK or a response (the dialog
layer owns ACKs for 2xx and 2xx retransmissions), or a new server transaction.
"""

from __future__ import annotations

import heapq

from sessiond.sip.actions import Action, Peer, StrayMessage, Terminated, TimedOut
from sessiond.sip.client_transaction import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from sessiond.sip.errors import TransactionError
from sessiond.sip.message import SipRequest, SipResponse
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
    # RFC 2543 fallback (17.2.3): Request-URI, From tag, Call-ID, CSeq number, top Via.
    seq = request.cseq.seq if request.cseq else ""
    return f"s2543|{request.uri}|{request.from_tag}|{request.call_id}|{seq}|{sent_by}|{m}"


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
        key = server_key(message)
        server = self.servers.get(key)
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
                target = server_key(request, method="INVITE")
                cancels = target if target in self.servers else None
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
        """The earliest time :meth:`handle_timer` has work to do (may be early, never late)."""
        while self._heap and self._lookup(self._heap[0][1]) is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

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
