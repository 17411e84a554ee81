"""The edge's transaction user (RFC 3261 17): what to do with each message. Sans-I/O.

The transaction layer absorbs retransmissions; what it hands up (a new request, a response,
a stray ACK or 2xx, a timeout) and every command's answer come here, with the time, and
:class:`TransactionUser` says what to do as typed outcomes the asyncio adapter
(:mod:`sessiond.edge.process`) carries out in order:

* :class:`Refuse` -- answer the received bytes statelessly (invalid, looping, overloaded,
  rate limited or no room for one more transaction), before any transaction exists;
* :class:`Reply` -- send a response through a server transaction: access refusals,
  admission's 503, CANCEL's 200/481, OPTIONS' 200, 405/501, a replayed answer after a
  restart, the 503 for a request the workers never answered;
* :class:`Transmit` -- raw bytes outside any transaction (an ACK again for a 2xx
  retransmission, a stateless answer after a restart, a dialog duty's retransmission);
* :class:`Publish` -- an event for the workers;
* :class:`Drop` -- count a refused or dropped message.

The state it keeps is the edge's short-lived, in-memory protocol state: calls held per
source (:class:`~sessiond.edge.admission.Admission`), dialog duties, requests the workers
have not answered, and our client transactions' identities for their timeout events.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessiond.core.messages import Respond, SendInvite, SendRequest
from sessiond.core.types import Event
from sessiond.edge.access import AccessPolicy
from sessiond.edge.admission import Admission
from sessiond.edge.credentials import CredentialStore
from sessiond.edge.duties import DialogDuties
from sessiond.edge.mapping import (
    ALLOWED,
    SUPPORTED,
    Local,
    build_request,
    build_response,
    check_utf8,
    parse_txn,
    request_destination,
    request_event,
    response_event,
    timeout_event,
)
from sessiond.edge.overload import OverloadGuard
from sessiond.edge.ratelimit import SourceRateLimiter
from sessiond.edge.transport import Address
from sessiond.edge.unanswered import Unanswered
from sessiond.sip.actions import RequestReceived
from sessiond.sip.errors import SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response, parse_message
from sessiond.sip.methods import check_accept, not_handled
from sessiond.sip.timers import TimerConfig
from sessiond.sip.transaction import TransactionLayer, answers
from sessiond.sip.validate import check_loop, validate_request
from sessiond.store.keys import Keys

log = logging.getLogger("sessiond.edge")


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the received bytes statelessly with ``error``; ``why`` counts it as dropped."""

    error: SipParseError
    why: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``response`` through server transaction ``key``."""

    key: str
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` to ``peer`` over ``transport``, outside any transaction."""

    transport: str
    peer: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class Publish:
    """Hand ``event`` to the workers."""

    event: Event


@dataclass(frozen=True, slots=True)
class Drop:
    """A message refused or dropped, counted in ``sessiond_sip_dropped_total``."""

    why: str


@dataclass(frozen=True, slots=True)
class Register:
    """A REGISTER for the registrar (:mod:`sessiond.edge.registrar`): its answer goes
    through server transaction ``key``."""

    key: str
    request: SipRequest
    transport: str
    peer: Address


Outcome = Refuse | Reply | Transmit | Publish | Drop | Register


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What a timeout event of one of our client transactions names."""

    call_id: str
    local_tag: str
    method: str
    cseq: int


class TransactionUser:
    """The protocol decisions of one edge; the adapter does the I/O."""

    def __init__(
        self,
        layer: TransactionLayer,
        keys: Keys,
        name: str,
        *,
        timers: TimerConfig,
        access: AccessPolicy,
        admission: Admission,
        limiter: SourceRateLimiter,
        overload: OverloadGuard,
        credentials: CredentialStore,
        max_message: int,
        max_transactions: int,
        started: float,
        registrar: bool = False,
        served: frozenset[str] = frozenset(),
    ) -> None:
        self.layer = layer
        self.keys = keys
        self.name = name
        self.timers = timers
        self.access = access
        self.admission = admission
        self.limiter = limiter
        self.overload = overload
        self.credentials = credentials
        self.max_message = max_message
        self.max_transactions = max_transactions  # server transactions (each holds a request)
        self.started = started
        # with --registrar, REGISTER is served (and listed in Allow); else 405 as any
        # method we do not handle
        self.registrar = registrar
        self.allowed = f"{ALLOWED}, REGISTER" if registrar else ALLOWED
        self.served = served  # the registrar's domains: an INVITE to one carries its ``aor``
        self.duties = DialogDuties(timers)
        self.unanswered = Unanswered(timers.timeout)  # the workers have not answered
        self.clients: dict[str, ClientInfo] = {}
        # the live server transaction each published request's ``txn`` names: a respond
        # command finds its transaction (and the request it holds) by the text it carries,
        # without parsing it; the text is parsed only when the transaction is gone
        self._by_txn: dict[str, tuple[str, str, tuple[str, int]]] = {}  # txn: key, transport, peer
        self._txn_of: dict[str, str] = {}  # server transaction key: txn
        self._wired: tuple[object, bytes] = (None, b"")

    def wire(self, msg: SipRequest | SipResponse) -> bytes:
        """``bytes(msg)``, encoded once for the several uses of the message just sent."""
        if self._wired[0] is not msg:
            self._wired = (msg, bytes(msg))
        return self._wired[1]

    # -- before the transaction layer -----------------------------------------------------
    def screen(
        self, req: SipRequest, size: int, locals_: list[Address], source: Address, now: float
    ) -> Refuse | None:
        """Validation (RFC 3261 8.2), loop detection (482), overload, the per-source rate
        limit for requests that would start something new, and the transaction limit:
        a refusal is answered statelessly."""
        try:
            check_utf8(req)  # before anything turns its fields into event fields or keys
            validate_request(
                req, supported=self.supported(req), max_size=self.max_message, size=size
            )
            check_loop(req, locals_)
            if req.method == "INVITE" and req.body and req.content_type != "application/sdp":
                # 8.2.3: a body we cannot read is refused, not taken for an offerless INVITE
                raise SipParseError(415, "Only application/sdp", (("Accept", "application/sdp"),))
            if req.method == "INVITE" or req.method == "UPDATE" and req.body:
                check_accept(req, "application/sdp")  # 8.2.3: what our answer carries
        except SipParseError as exc:
            return Refuse(exc)
        servers = self.layer.servers
        starts = req.method == "INVITE" and not req.to_tag or req.method in ("OPTIONS", "REGISTER")
        if starts and self.layer.key_for(req) not in servers:
            why = self.overload.reason(now) if req.method == "INVITE" else None
            if why is not None:
                busy = SipParseError(503, f"Overloaded ({why})", (("Retry-After", "5"),))
                return Refuse(busy, "overload")
            if not self.limiter.allow(source[0], now):
                retry = str(self.limiter.retry_after(source[0]))
                busy = SipParseError(
                    503, "Too many requests from your address", (("Retry-After", retry),)
                )
                return Refuse(busy, "rate-limit")
        # At max_transactions a request that would open one more gets a 503: what a flood
        # can make the edge hold stays bounded.
        if len(servers) < self.max_transactions or req.method == "ACK":
            return None
        if self.layer.key_for(req) in servers:
            return None
        busy = SipParseError(503, "Too many open transactions", (("Retry-After", "5"),))
        return Refuse(busy, "transaction-limit")

    def supported(self, req: SipRequest) -> tuple[str, ...]:
        """The option tags a request may require: path too for a REGISTER we serve."""
        if self.registrar and req.method == "REGISTER":
            return (*SUPPORTED, "path")  # RFC 3327
        return SUPPORTED

    @staticmethod
    def mappable(resp: SipResponse) -> bool:
        """False (the response is dropped) for one ``response_event`` cannot map."""
        try:
            check_utf8(resp)
        except SipParseError:
            return False
        return True

    # -- requests -------------------------------------------------------------------------
    def looks_up_answers(self, now: float) -> bool:
        """Soon after a (re)start (64*T1) a request may retransmit one answered before the
        restart: its stored answer is looked up first (:meth:`replay`)."""
        return now - self.started < self.timers.timeout

    def answer_key(self, msg: SipRequest | SipResponse) -> str:
        """The key of the final response stored for ``msg``'s request ("" for none)."""
        if isinstance(msg, SipRequest) and msg.method in ("ACK", "CANCEL"):
            return ""
        via, cseq = msg.top_via, msg.cseq
        if via is None or cseq is None or not msg.branch:
            return ""
        if isinstance(msg, SipResponse) and cseq.method == "ACK":
            return ""
        host, port = via.sent_by
        return self.keys.answered(f"{host}:{port or ''}", msg.branch, cseq.method)

    @staticmethod
    def replay(action: RequestReceived, stored: Any) -> Reply | None:
        """The final response stored for this request before a restart, to send again."""
        if not isinstance(stored, bytes):
            return None
        try:
            resp = parse_message(stored)
        except SipParseError:
            return None
        if not isinstance(resp, SipResponse) or not answers(resp, action.request):
            return None
        return Reply(action.key, resp)

    def on_request(
        self, action: RequestReceived, transport: str, now: float, wall: float
    ) -> list[Outcome]:
        """A new request: refused, answered here (CANCEL, OPTIONS, 405/501), or published."""
        req = action.request
        if req.method == "REGISTER" and self.registrar:
            return self._register(action, transport)
        starts = req.method in ("INVITE", "REGISTER", "OPTIONS") and not req.to_tag
        refusal = self.access.check(req, action.peer[0], wall) if starts else None
        if refusal is not None:  # through the transaction, so its ACK is absorbed
            resp = _answer(req, refusal.status, refusal.reason, refusal.headers)
            return [Drop(f"access-{refusal.status}"), Reply(action.key, resp)]
        if starts and req.method == "INVITE" and (shed := self._admit(action, now)):
            return shed
        out: list[Outcome] = []
        if req.method == "CANCEL":
            target = self.layer.cancel_target(action.key)
            out.append(Reply(action.key, make_response(req, 200 if target is not None else 481)))
            if target is None:
                return out
            req = target.request  # the Cancel event carries the INVITE's identity
        elif req.method == "OPTIONS":
            allow = [("Allow", self.allowed), ("Accept", "application/sdp")]
            return [Reply(action.key, make_response(req, 200, headers=allow))]
        if req.method == "PRACK":
            rack = (req.header("rack") or "").split()
            if rack and rack[0].isdigit():
                self.duties.pracked((req.call_id or "", int(rack[0])))
        event = request_event(req, transport, action.peer, self.name, served=self.served)
        if event is None:
            resp = not_handled(req, self.allowed, to_tag=secrets.token_hex(5))  # 405 or 501 (8.2.1)
            return [Reply(action.key, resp)]
        if action.request.method == "CANCEL":
            event = Event(f"{event.id}:cancel", "Cancel", event.data)
        else:  # the workers answer it (a CANCEL was answered above)
            self.unanswered.handed(action.key, now, invite=req.method == "INVITE")
            txn = event.data.get("txn")
            if isinstance(txn, str):
                self._by_txn[txn] = (action.key, transport, action.peer)
                self._txn_of[action.key] = txn
        out.append(Publish(event))
        return out

    def _admit(self, action: RequestReceived, now: float) -> list[Outcome]:
        """A new INVITE counted against its source, or refused (nothing is admitted)."""
        req = action.request
        shed = self.admission.check(action.peer[0])
        if shed is not None:  # the source holds its share, or the media nodes are full
            retry = (("Retry-After", str(shed.retry_after)),)
            return [Drop(shed.why), Reply(action.key, _answer(req, 503, shed.reason, retry))]
        self.admission.admit((req.call_id or "", req.from_tag or ""), action.peer[0], now)
        return []

    def _register(self, action: RequestReceived, transport: str) -> list[Outcome]:
        """A REGISTER for the registrar (the allow list applies; digest is its own)."""
        if not self.access.allowed_source(action.peer[0]):
            refused = _answer(action.request, 403, "Forbidden")
            return [Drop("access-403"), Reply(action.key, refused)]
        return [Register(action.key, action.request, transport, action.peer)]

    # -- responses, strays, timeouts ------------------------------------------------------
    def on_response(
        self, resp: SipResponse, source: tuple[str, int] | None = None
    ) -> list[Outcome]:
        if resp.method == "INVITE" and 200 <= resp.status < 300:
            ack = self._reack(resp)
            if ack is not None:
                return [ack]
        event = response_event(resp, self.name, source)
        if event is None:
            return []
        if resp.status in (401, 407):  # the table retries only when we can answer
            user = self.credentials.answerable(resp)
            event = Event(event.id, event.type, {**event.data, "auth_user": user})
        return [Publish(event)]

    def on_stray(self, msg: SipRequest | SipResponse, transport: str) -> list[Outcome]:
        """An ACK for a 2xx, or a 2xx retransmission (the dialog's, not a transaction's)."""
        if isinstance(msg, SipRequest):
            if msg.call_id and msg.cseq:
                self.duties.acknowledged((msg.call_id, msg.cseq.seq))
            event = request_event(msg, transport, ("", 0), self.name)
            return [Publish(event)] if event is not None else []
        if msg.method != "INVITE" or not 200 <= msg.status < 300:
            return []
        ack = self._reack(msg)
        if ack is not None:
            return [ack]
        event = response_event(msg, self.name)
        return [Publish(event)] if event is not None else []

    def _reack(self, resp: SipResponse) -> Transmit | None:
        """A 2xx retransmission whose ACK we sent: send the ACK again (13.2.2.4)."""
        ack = self.duties.ack_for((resp.call_id or "", resp.cseq.seq if resp.cseq else -1))
        return None if ack is None else Transmit(ack.transport, ack.peer, ack.data)

    def on_timeout(self, key: str) -> list[Outcome]:
        info = self.clients.pop(key, None)
        if info is None or info.method == "CANCEL":
            return []
        return [
            Publish(timeout_event(info.call_id, info.local_tag, info.method, info.cseq, self.name))
        ]

    def on_terminated(self, key: str) -> None:
        self.unanswered.answered(key)
        txn = self._txn_of.pop(key, None)
        if txn is not None:
            self._by_txn.pop(txn, None)
        self.clients.pop(key, None)

    def not_answered(self, now: float) -> list[Outcome]:
        """Requests the workers did not answer in time (``Unanswered``): 503, so the caller
        stops waiting and the transaction (and the request it holds) ends."""
        out: list[Outcome] = []
        for key in self.unanswered.expired(now):
            tx = self.layer.servers.get(key)
            if tx is None or tx.final_sent:
                continue
            busy = _answer(
                tx.request, 503, "No answer from the session workers", (("Retry-After", "5"),)
            )
            out += [Drop("unanswered"), Reply(key, busy)]
        return out

    def next_deadline(self) -> float | None:
        """The earliest time a timer (transaction, duty or unanswered request) is due."""
        due = [
            t
            for t in (self.layer.get_timer(), self.duties.next_due(), self.unanswered.next_due())
            if t is not None
        ]
        return min(due) if due else None

    # -- commands -------------------------------------------------------------------------
    def respond(
        self, cmd: Respond, locals_: Mapping[str, Local], default: Local, now: float
    ) -> Reply | Transmit:
        """The workers' answer to a request: through its server transaction, or, when that
        is gone (we restarted), statelessly to the address its ``txn`` recorded."""
        live = self._by_txn.get(cmd.txn)
        server = self.layer.servers.get(live[0]) if live is not None else None
        if live is not None and server is not None:
            key, txn = live[0], (live[1], live[2], server.request)
        else:
            txn = parse_txn(cmd.txn)
            key = self.layer.key_for(txn[2])
        req = txn[2]
        transport, dest, resp = build_response(
            cmd, locals_.get(txn[0]) or default, txn, allow=self.allowed
        )
        self.unanswered.answered(key)
        out = (
            Reply(key, resp)
            if key in self.layer.servers
            else Transmit(transport, dest, self.wire(resp))
        )
        self.call_ended(req, resp.status)
        if req.method == "INVITE" and 200 <= resp.status < 300:
            dialog = (resp.call_id or "", resp.cseq.seq if resp.cseq else 0)
            self.duties.answered(dialog, self.wire(resp), transport, dest, now)
        elif cmd.reliable and resp.header("rseq"):  # RFC 3262: until the PRACK
            rseq = int(str(resp.header("rseq")).strip())
            self.duties.provisional(
                (resp.call_id or "", rseq), self.wire(resp), transport, dest, now
            )
        return out

    def build(
        self,
        cmd: SendInvite | SendRequest,
        method: str,
        locals_: Mapping[str, Local],
        default: Local,
    ) -> SipRequest:
        """A request of a command, with the Via/Contact of the transport it will leave on."""
        req = build_request(cmd, method, default, allow=self.allowed)
        local = locals_.get(request_destination(req)[0])
        if local is not None and local is not default:
            req = build_request(cmd, method, local, allow=self.allowed)
        return req

    def outgoing(
        self,
        cmd: SendInvite | SendRequest,
        method: str,
        locals_: Mapping[str, Local],
        default: Local,
    ) -> SipRequest:
        """A request of a command that starts a client transaction: our BYE ends its call;
        an INVITE retried after a 401/407 carries our credentials."""
        req = self.build(cmd, method, locals_, default)
        if method == "BYE":
            self.call_ended(req, 0, ours=True)
        if isinstance(cmd, SendInvite) and cmd.challenges:  # RFC 3261 22.2
            if cmd.challenge_code is None:
                raise ValueError("challenges without challenge_code")
            req, answered = self.credentials.authorize(req, cmd.challenge_code, cmd.challenges)
            if not answered:
                log.warning("no credentials answer the challenge to %s", cmd.call_id)
        return req

    def call_ended(self, req: SipRequest, status: int, *, ours: bool = False) -> None:
        """Release the call a response to ``req`` (or our BYE, ``ours``) ends."""
        if ours:  # our BYE: the caller's tag is its To tag
            self.admission.release((req.call_id or "", req.to_tag or ""))
        elif (
            req.method == "INVITE"
            and not req.to_tag
            and status >= 300
            or (req.method == "BYE" and 200 <= status < 300)
        ):
            self.admission.release((req.call_id or "", req.from_tag or ""))


def _answer(
    req: SipRequest, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()
) -> SipResponse:
    return make_response(req, status, reason, headers=list(headers), to_tag=secrets.token_hex(5))
