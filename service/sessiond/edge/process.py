"""The edge process: SIP on the wire, events and commands on Redis.

Theory of operation
-------------------
Inbound, each datagram or framed TCP message is parsed; bad input gets a stateless error
response (or is dropped when nothing can be answered) and never reaches the workers. Valid
messages go through the sans-I/O :class:`~sessiond.sip.transaction.TransactionLayer`,
which absorbs retransmissions and hands new requests and responses to this process (the
transaction user). An INVITE's 100 Trying goes out only when no response has gone out
within ``trying_delay`` (180 ms: RFC 3261 17.2.1 asks for it when the TU will not answer
within 200 ms, and the edge's timer loop may fire up to 10 ms late): most calls ring
sooner, which saves a send. New requests and responses become events on the partition
stream of their Call-ID, published by one flusher task so one call's events keep their
order.

Outbound, commands from the state tables arrive on this edge's command stream (and the
shared ``any`` stream) and become requests and responses. A response whose server
transaction is gone (this edge restarted) is sent statelessly to the address recorded in
the session's ``txn``. Command ids seen recently are dropped, so a re-emitted outbox does
not send twice.

The dialog duties the transaction layer leaves to the TU are kept here, in memory and short
lived: a 2xx we sent to an INVITE is retransmitted (T1 doubling to T2) until its ACK arrives
or 64*T1 pass (RFC 3261 13.3.1.4), and an ACK we sent for a 2xx is sent again for each 2xx
retransmission (13.2.2.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessiond.core import metrics
from sessiond.core.types import Event
from sessiond.edge.access import AccessPolicy
from sessiond.edge.admission import Admission
from sessiond.edge.credentials import CredentialStore
from sessiond.edge.duties import DialogDuties
from sessiond.edge.loops import failed, survive
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
from sessiond.edge.registrar_client import OutboundConfig, RegistrarClient
from sessiond.edge.transport import Address, ListenSpec, Transports
from sessiond.edge.unanswered import Unanswered
from sessiond.sip.actions import (
    Action,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayMessage,
    Terminated,
    TimedOut,
)
from sessiond.sip.errors import SipError, SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response, parse_message
from sessiond.sip.methods import check_accept, not_handled
from sessiond.sip.stateless import error_response
from sessiond.sip.timers import TimerConfig
from sessiond.sip.transaction import TransactionLayer, answers
from sessiond.sip.validate import check_loop, validate_request
from sessiond.store.client import RETRYABLE, is_embedded
from sessiond.store.consumer import SeenIds
from sessiond.store.entries import decode as decode_entry
from sessiond.store.entries import encode_event
from sessiond.store.keys import EDGE_GROUP, STREAM_MAXLEN, WORKERS_GROUP, Keys
from sessiond.store.liveness import Liveness
from sessiond.store.round import Round
from sessiond.store.streams import Backlog, cancel_and_wait, ensure_groups, retrying

log = logging.getLogger("sessiond.edge")
GROUP = EDGE_GROUP
ALLOW = ALLOWED
MAX_MESSAGE = 65_535


@dataclass(frozen=True, slots=True)
class _ClientInfo:
    call_id: str
    local_tag: str
    method: str
    cseq: int
    transport: str


class Edge:
    def __init__(
        self,
        redis: Any,
        keys: Keys,
        name: str,
        listen: list[ListenSpec],
        *,
        timers: TimerConfig | None = None,
        command_batch: int = 256,
        rate_limit: float = 50.0,
        rate_burst: float = 100.0,
        shed_lag: int = 5000,
        shed_delay: float = 1.0,
        access: AccessPolicy | None = None,
        max_message: int = MAX_MESSAGE,
        tcp_idle_timeout: float = 300.0,
        tcp_message_timeout: float = 32.0,
        max_connections: int = 10_000,
        max_transactions: int = 100_000,
        outbound: OutboundConfig | None = None,
        trying_delay: float = 0.18,
        admission: Admission | None = None,
    ) -> None:
        self.max_message = max_message
        self.max_transactions = max_transactions  # server transactions (each holds a request)
        self.redis = redis
        self.keys = keys
        self.name = name
        self.listen = listen
        self.timers = timers or TimerConfig()
        self.layer = TransactionLayer(self.timers, trying_delay=trying_delay)
        self.transports = Transports(
            self.on_message,
            idle_timeout=tcp_idle_timeout,
            message_timeout=tcp_message_timeout,
            max_connections=max_connections,
            on_drop=self._dropped,
        )
        self.limiter = SourceRateLimiter(rate_limit, rate_burst)
        self.overload = OverloadGuard(shed_lag, shed_delay)
        self.access = access or AccessPolicy()
        self.admission = Admission() if admission is None else admission
        self.command_batch = command_batch
        self.locals: dict[str, Local] = {}
        self.stopping = asyncio.Event()
        self._done = SeenIds()  # recent command ids
        self.liveness = Liveness(redis, keys, "edge", name)
        self._to_ack: dict[str, list[bytes]] = {}  # command entries run, acked on next read
        self._key_transport: dict[str, str] = {}
        self._clients: dict[str, _ClientInfo] = {}
        self.duties = DialogDuties(self.timers)
        self.unanswered = Unanswered(self.timers.timeout)  # the workers have not answered
        # ("xadd", stream, fields) events, ("set", key, value) answered-request records
        self._outbox: list[tuple[str, str, Any]] = []
        self._wired: tuple[object, bytes] = (None, b"")  # the last message encoded
        self.started = time.monotonic()
        self._early: asyncio.Queue[tuple[RequestReceived, str]] = asyncio.Queue()
        self._early_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._poll = 0.002 if is_embedded(redis) else 0.0
        self._streams = [keys.edge_commands(name), keys.edge_commands("any")]
        self._backlog = Backlog(self._streams)  # commands delivered to us, maybe never run
        # our own accounts (challenges to our INVITEs) and registrations / keepalives
        self.credentials = outbound.credentials if outbound else CredentialStore()
        self.registrar = (
            RegistrarClient(outbound, redis, keys, name, self.send_own)
            if outbound is not None and outbound.active
            else None
        )

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the consumer groups, bind the listeners, then announce the edge: once it
        answers SIP it is also a live edge that applications can place calls through."""
        await retrying(
            self.start_groups, stopping=self.stopping, recreate_groups=self.start_groups, log=log
        )
        for spec in self.listen:
            bound = await self.transports.listen(spec)
            self.locals.setdefault(
                bound.transport, Local(bound.host, bound.port, bound.transport, self.name)
            )
            log.info(
                "edge %s listening on %s:%s:%s",
                self.name,
                bound.transport.lower(),
                bound.host,
                bound.port,
            )
        await retrying(
            self._beat, stopping=self.stopping, recreate_groups=self.start_groups, log=log
        )

    async def run(self) -> None:
        await self.start()
        # one command reader per stream: the two streams live in different cluster slots
        loops = [
            *(self._commands(s) for s in self._streams),
            self._flusher(),
            self._timers(),
            self._heartbeat(),
        ]
        if self.registrar is not None:
            addresses = {t: (local.host, local.port) for t, local in self.locals.items()}
            self.registrar.start(addresses, time.monotonic())
            loops.append(self.registrar.run())
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await self.stopping.wait()
        finally:
            if self.registrar is not None:  # unregister while the timers still run
                await self.registrar.stop()
            if self._early_task is not None:
                tasks.append(self._early_task)
            await cancel_and_wait(tasks)
            # Commands already queued (say, the 200 for a BYE just received) still go out,
            # and the events already received are still published, before the sockets close.
            with contextlib.suppress(*RETRYABLE):
                await asyncio.wait_for(self._drain(), 2.0)
            self.transports.close()
        with contextlib.suppress(Exception):
            await self.liveness.leave()

    def stop(self) -> None:
        self.stopping.set()

    @property
    def address(self) -> Local:
        return self.locals.get("UDP") or next(iter(self.locals.values()))

    # -- inbound --------------------------------------------------------------------------
    def on_message(self, data: bytes, transport: str, source: Address) -> None:
        if len(data) > self.max_message:
            self._stateless_error(data, transport, source, SipParseError(513, "Message Too Large"))
            return
        try:
            msg = parse_message(data, stream=transport == "TCP")
        except SipParseError as exc:
            self._stateless_error(data, transport, source, exc)
            return
        if isinstance(msg, SipRequest) and not self._admit(msg, data, transport, source):
            return
        if isinstance(msg, SipResponse) and not _mappable(msg):
            return
        if isinstance(msg, SipRequest) and self._no_room(msg, data, transport, source):
            return
        _count("in", _kind(msg))
        actions = self.layer.receive(msg, source, time.monotonic(), reliable=transport == "TCP")
        self.execute(actions, transport)

    def _admit(self, req: SipRequest, data: bytes, transport: str, source: Address) -> bool:
        """Validation (RFC 3261 8.2), loop detection (482) and the per-source rate limit for
        requests that would start something new. Refusals are answered statelessly."""
        try:
            check_utf8(req)  # before anything turns its fields into event fields or keys
            validate_request(req, supported=SUPPORTED, max_size=self.max_message, size=len(data))
            check_loop(req, [(local.host, local.port) for local in self.locals.values()])
            if req.method == "INVITE" and req.body and req.content_type != "application/sdp":
                # 8.2.3: a body we cannot read is refused, not taken for an offerless INVITE
                raise SipParseError(415, "Only application/sdp", (("Accept", "application/sdp"),))
            if req.method == "INVITE" or req.method == "UPDATE" and req.body:
                check_accept(req, "application/sdp")  # 8.2.3: what our answer carries
        except SipParseError as exc:
            self._stateless_error(data, transport, source, exc)
            return False
        starts = req.method == "INVITE" and not req.to_tag or req.method in ("OPTIONS", "REGISTER")
        if starts and self.layer.key_for(req) not in self.layer.servers:
            why = self.overload.reason(time.monotonic()) if req.method == "INVITE" else None
            if why is not None:
                self._dropped("overload")
                busy = SipParseError(503, f"Overloaded ({why})", (("Retry-After", "5"),))
                self._stateless_error(data, transport, source, busy)
                return False
            if not self.limiter.allow(source[0], time.monotonic()):
                self._dropped("rate-limit")
                retry = str(self.limiter.retry_after(source[0]))
                busy = SipParseError(
                    503, "Too many requests from your address", (("Retry-After", retry),)
                )
                self._stateless_error(data, transport, source, busy)
                return False
        return True

    def _no_room(self, req: SipRequest, data: bytes, transport: str, source: Address) -> bool:
        """At ``max_transactions`` open server transactions a request that would open one
        more gets a stateless 503: what a flood can make the edge hold stays bounded."""
        servers = self.layer.servers
        if len(servers) < self.max_transactions or req.method == "ACK":
            return False
        if self.layer.key_for(req) in servers:
            return False
        self._dropped("transaction-limit")
        busy = SipParseError(503, "Too many open transactions", (("Retry-After", "5"),))
        self._stateless_error(data, transport, source, busy)
        return True

    def _stateless_error(
        self, data: bytes, transport: str, source: Address, exc: SipParseError
    ) -> None:
        response = error_response(data, exc)
        if response is None:
            self._dropped("unparseable")
            return
        _count("out", f"{exc.status}")
        self.transports.send(transport, source, response)

    def execute(self, actions: list[Action], transport: str = "UDP") -> None:
        for action in actions:
            if isinstance(action, Send):
                via = self._key_transport.get(action.key, transport)
                msg = action.message
                data = self._wire(msg)
                if isinstance(msg, SipResponse) and msg.status >= 200:
                    self._remember_answer(msg, data)
                _count("out", _kind(msg))
                self.transports.send(via, action.peer, data)
            elif isinstance(action, RequestReceived):
                self._key_transport[action.key] = transport
                self._on_request(action, transport)
            elif isinstance(action, ResponseReceived):
                if self.registrar is not None and self.registrar.owns(action.key):
                    self.registrar.on_response(action.key, action.response)
                else:
                    self._on_response(action.response)
            elif isinstance(action, StrayMessage):
                self._on_stray(action.message, transport)
            elif isinstance(action, TimedOut):
                if self.registrar is not None and self.registrar.owns(action.key):
                    self.registrar.on_timeout(action.key)
                else:
                    self._on_timeout(action.key)
            elif isinstance(action, Terminated):
                self._key_transport.pop(action.key, None)
                self.unanswered.answered(action.key)
                self._clients.pop(action.key, None)
                if self.registrar is not None:
                    self.registrar.forget(action.key)

    def _wire(self, msg: SipRequest | SipResponse) -> bytes:
        """``bytes(msg)``, encoded once for the several uses of the message just sent."""
        if self._wired[0] is not msg:
            self._wired = (msg, bytes(msg))
        return self._wired[1]

    def _remember_answer(self, resp: SipResponse, data: bytes) -> None:
        """Keep our final response to a request in Redis for 64*T1, so an edge that restarts
        (any edge: the key does not name one) still recognises the request's retransmissions
        and answers them the same way instead of starting the request again."""
        if resp.cseq is None or resp.cseq.method == "ACK":
            return
        key = self._answer_key(resp)
        if key and (not self._outbox or self._outbox[-1][1] != key):
            self._outbox.append(("set", key, data))
            self._wake.set()

    def _answer_key(self, msg: SipRequest | SipResponse) -> str:
        via, cseq = msg.top_via, msg.cseq
        if via is None or cseq is None or not msg.branch:
            return ""
        host, port = via.sent_by
        return self.keys.answered(f"{host}:{port or ''}", msg.branch, cseq.method)

    def _on_request(self, action: RequestReceived, transport: str) -> None:
        """Soon after a (re)start a request may retransmit one answered before: until 64*T1
        have passed (and the queue is empty), requests go through one ordered queue that
        looks their answer up in Redis first, so no request overtakes another."""
        early = time.monotonic() - self.started < self.timers.timeout
        if early or not self._early.empty():
            self._early.put_nowait((action, transport))
            if self._early_task is None:
                self._early_task = asyncio.get_running_loop().create_task(self._early_loop())
            return
        self._handle_request(action, transport)

    async def _early_loop(self) -> None:
        """The queued requests in arrival order, their stored answers looked up in one round
        trip per batch (one GET per request made the edge's first 64*T1 its slowest)."""
        while True:
            batch = [await self._early.get()]
            while not self._early.empty():
                batch.append(self._early.get_nowait())
            keys = [
                ""
                if action.request.method in ("ACK", "CANCEL")
                else self._answer_key(action.request)
                for action, _ in batch
            ]
            stored: list[Any] = [None] * len(batch)
            if any(keys):
                pipe = Round(self.redis)
                for key in filter(None, keys):
                    pipe.get(key)
                try:
                    found = iter(await pipe.execute(raise_on_error=False))
                    stored = [next(found) if key else None for key in keys]
                except Exception as exc:  # a failed lookup must never stop this loop
                    log.warning("looking up %d stored answers failed: %s", len(batch), exc)
            for (action, transport), answer in zip(batch, stored, strict=True):
                with survive("early"):  # one failing request must not stop the queue
                    if not self._replayed(action, transport, answer):
                        self._handle_request(action, transport)

    def _replayed(self, action: RequestReceived, transport: str, stored: Any) -> bool:
        """Answer a request again with the final response stored for it, if any."""
        if not isinstance(stored, bytes):
            return False
        try:
            resp = parse_message(stored)
        except SipParseError:
            return False
        if not isinstance(resp, SipResponse) or not answers(resp, action.request):
            return False
        _count("in", "retransmission-after-restart")
        self.execute(self.layer.respond(action.key, resp, time.monotonic()), transport)
        return True

    def _handle_request(self, action: RequestReceived, transport: str) -> None:
        req = action.request
        now = time.monotonic()
        starts = req.method in ("INVITE", "REGISTER", "OPTIONS") and not req.to_tag
        refusal = self.access.check(req, action.peer[0], time.time()) if starts else None
        if refusal is not None:  # through the transaction, so its ACK is absorbed
            self._dropped(f"access-{refusal.status}")
            resp = make_response(
                req,
                refusal.status,
                refusal.reason,
                headers=refusal.headers,
                to_tag=secrets.token_hex(5),
            )
            self.execute(self.layer.respond(action.key, resp, now), transport)
            return
        if starts and req.method == "INVITE" and not self._hold_call(action, transport, now):
            return
        if req.method == "CANCEL":
            target = self.layer.cancel_target(action.key)
            code = 200 if target is not None else 481
            self.execute(self.layer.respond(action.key, make_response(req, code), now), transport)
            if target is None:
                return
            req = target.request  # the Cancel event carries the INVITE's identity
        elif req.method == "OPTIONS":
            ok = make_response(req, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
            self.execute(self.layer.respond(action.key, ok, now), transport)
            return
        if req.method == "PRACK":
            rack = (req.header("rack") or "").split()
            if rack and rack[0].isdigit():
                self.duties.pracked((req.call_id or "", int(rack[0])))
        event = request_event(req, transport, action.peer, self.name)
        if event is None:
            resp = not_handled(req, ALLOW, to_tag=secrets.token_hex(5))  # 405 or 501 (8.2.1)
            self.execute(self.layer.respond(action.key, resp, now), transport)
            return
        if action.request.method == "CANCEL":
            event = Event(f"{event.id}:cancel", "Cancel", event.data)
        else:  # the workers answer it (a CANCEL was answered above)
            self.unanswered.handed(action.key, now, invite=req.method == "INVITE")
        self._publish(event)

    def _hold_call(self, action: RequestReceived, transport: str, now: float) -> bool:
        """A new call from the request's source, unless the source holds its share or the
        media nodes are full: then 503 + Retry-After, through the transaction."""
        req, source = action.request, action.peer[0]
        shed = self.admission.check(source)
        if shed is None:
            self.admission.admit((req.call_id or "", req.from_tag or ""), source, now)
            return True
        self._dropped(shed.why)
        retry = (("Retry-After", str(shed.retry_after)),)
        resp = make_response(req, 503, shed.reason, headers=retry, to_tag=secrets.token_hex(5))
        self.execute(self.layer.respond(action.key, resp, now), transport)
        return False

    def _call_ended(self, req: SipRequest, status: int, *, ours: bool = False) -> None:
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

    def _on_response(self, resp: SipResponse) -> None:
        if resp.method == "INVITE" and 200 <= resp.status < 300 and self._reack(resp):
            return
        event = response_event(resp, self.name)
        if event is not None:
            if resp.status in (401, 407):  # the table retries only when we can answer
                user = self.credentials.answerable(resp)
                event = Event(event.id, event.type, {**event.data, "auth_user": user})
            self._publish(event)

    def _on_stray(self, msg: SipRequest | SipResponse, transport: str) -> None:
        if isinstance(msg, SipRequest):  # an ACK for a 2xx
            if msg.call_id and msg.cseq:
                self.duties.acknowledged((msg.call_id, msg.cseq.seq))
            event = request_event(msg, transport, ("", 0), self.name)
            if event is not None:
                self._publish(event)
        elif msg.method == "INVITE" and 200 <= msg.status < 300 and not self._reack(msg):
            event = response_event(msg, self.name)
            if event is not None:
                self._publish(event)

    def _reack(self, resp: SipResponse) -> bool:
        """A 2xx retransmission whose ACK we sent: send the ACK again (13.2.2.4)."""
        ack = self.duties.ack_for((resp.call_id or "", resp.cseq.seq if resp.cseq else -1))
        if ack is None:
            return False
        self.transports.send(ack.transport, ack.peer, ack.data)
        return True

    def _on_timeout(self, key: str) -> None:
        info = self._clients.pop(key, None)
        if info is not None and info.method != "CANCEL":
            self._publish(
                timeout_event(info.call_id, info.local_tag, info.method, info.cseq, self.name)
            )

    def _publish(self, event: Event) -> None:
        call_id = str(event.data.get("call_id", ""))
        stream = self.keys.events(self.keys.partition_of_call(call_id))
        self._outbox.append(("xadd", stream, encode_event(event)))
        self.overload.queued(time.monotonic())
        self._wake.set()

    def _dropped(self, why: str) -> None:
        metrics.child(metrics.SIP_DROPPED, why).inc()

    # -- outbound -------------------------------------------------------------------------
    async def execute_command(self, cid: str, kind: str, data: Mapping[str, Any]) -> None:
        if not self._done.first(cid):
            return
        try:
            if kind == "respond":
                self._respond(data)
            elif kind in ("invite", "bye", "cancel"):
                await self._request(kind.upper(), data)
            elif kind == "request":  # an in-dialog request: re-INVITE, UPDATE, REFER...
                await self._request(str(data["method"]), data)
            elif kind == "ack":
                await self._ack(data)
            else:
                log.warning("unknown edge command %s (%s)", kind, cid)
        except (SipError, ValueError, KeyError, OSError) as exc:
            log.warning("command %s %s failed: %s", kind, cid, exc)

    def _respond(self, data: Mapping[str, Any]) -> None:
        txn = parse_txn(str(data["txn"]))
        req = txn[2]
        local = self.locals.get(txn[0]) or self.address
        transport, dest, resp = build_response(data, local, txn)
        key = self.layer.key_for(req)
        now = time.monotonic()
        self.unanswered.answered(key)
        if key in self.layer.servers:
            self.execute(self.layer.respond(key, resp, now), transport)
        else:  # the transaction is gone (we restarted): answer statelessly
            self.transports.send(transport, dest, self._wire(resp))
        self._call_ended(req, resp.status)
        if req.method == "INVITE" and 200 <= resp.status < 300:
            dialog = (resp.call_id or "", resp.cseq.seq if resp.cseq else 0)
            self.duties.answered(dialog, self._wire(resp), transport, dest, now)
        elif data.get("reliable") and resp.header("rseq"):  # RFC 3262: until the PRACK
            rseq = int(str(resp.header("rseq")).strip())
            self.duties.provisional(
                (resp.call_id or "", rseq), self._wire(resp), transport, dest, now
            )

    async def _resolve(self, req: SipRequest) -> tuple[str, Address]:
        transport, host, port = request_destination(req)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        return transport, (str(infos[0][4][0]), int(infos[0][4][1]))

    def _build(self, data: Mapping[str, Any], method: str) -> SipRequest:
        """Build with the Via/Contact of the transport the request will leave on."""
        req = build_request(data, method, self.address)
        transport = request_destination(req)[0]
        local = self.locals.get(transport)
        if local is not None and local is not self.address:
            req = build_request(data, method, local)
        return req

    async def _request(self, method: str, data: Mapping[str, Any]) -> None:
        req = self._build(data, method)
        if method == "BYE":
            self._call_ended(req, 0, ours=True)
        if data.get("challenges"):  # an INVITE retried after a 401/407 (RFC 3261 22.2)
            req, answered = self.credentials.authorize(
                req, int(data["challenge_code"]), [str(v) for v in data["challenges"]]
            )
            if not answered:
                log.warning("no credentials answer the challenge to %s", data["call_id"])
        transport, peer = await self._resolve(req)
        key, actions = self.layer.send_request(
            req, peer, time.monotonic(), reliable=transport == "TCP"
        )
        self._key_transport[key] = transport
        self._clients[key] = _ClientInfo(
            str(data["call_id"]), str(data["local_tag"]), method, int(data["cseq"]), transport
        )
        self.execute(actions, transport)

    async def send_own(self, req: SipRequest) -> str:
        """Send a request of the edge's own (REGISTER, OPTIONS keepalive) through the
        transaction layer; returns the transaction key its responses will carry."""
        transport, peer = await self._resolve(req)
        key, actions = self.layer.send_request(
            req, peer, time.monotonic(), reliable=transport == "TCP"
        )
        self._key_transport[key] = transport
        self.execute(actions, transport)
        return key

    async def _ack(self, data: Mapping[str, Any]) -> None:
        req = self._build(data, "ACK")
        transport, peer = await self._resolve(req)
        raw = bytes(req)
        _count("out", "ACK")
        self.transports.send(transport, peer, raw)
        key = (str(data["call_id"]), int(data["cseq"]))
        self.duties.sent_ack(key, raw, transport, peer, time.monotonic())

    # -- loops ----------------------------------------------------------------------------
    async def _commands(self, stream: str) -> None:
        while not self.stopping.is_set():
            with survive("commands"):
                await retrying(
                    lambda: self._commands_once(stream),
                    stopping=self.stopping,
                    recreate_groups=self.start_groups,
                    log=log,
                    on_error=self._backlog.lost,
                )
                continue
            await asyncio.sleep(1.0)  # a failure that is not an outage: do not spin on it

    async def start_groups(self) -> None:
        """Groups start at the stream's end: commands older than any edge are stale."""
        await ensure_groups(self.redis, self._streams, GROUP, start="$")

    async def _drain(self) -> None:
        for stream in self._streams:
            while await self._commands_once(stream, block=None):
                pass
            await self._commands_once(stream, block=None)  # sends the last acks
        batch, self._outbox = self._outbox, []
        await self._publish_batch(batch)

    async def _commands_once(self, stream: str, block: int | None = 50) -> int:
        """Read a batch of commands and run them; returns how many. The acknowledgement of
        the previous batch goes in the same round trip as this read (one round trip per
        batch, not two). After a Redis error (and at start) it first reads the entries
        delivered to this edge and never acked (:class:`~sessiond.store.streams.Backlog`): those
        run already are dropped by id, those older than a transaction's lifetime are stale."""
        pipe = Round(self.redis)
        acks = self._to_ack.pop(stream, [])
        if acks:
            pipe.xack(stream, GROUP, *acks)
        start = self._backlog.start(stream)
        pipe.xreadgroup(GROUP, self.name, {stream: start}, count=self.command_batch, block=block)
        try:
            *_, reply = await pipe.execute()
        except BaseException:
            if acks:  # not sent: keep them for the next round
                self._to_ack.setdefault(stream, []).extend(acks)
            raise
        got = sum(len(entries) for _, entries in reply or [])
        self._backlog.read(stream, start, got)
        if start != ">" and not got:  # an empty backlog: read the new commands now
            return await self._commands_once(stream, block)
        if not reply:
            if self._poll and block:
                await asyncio.sleep(self._poll)
            return 0
        count = 0
        for _, entries in reply:
            for entry_id, fields in entries:
                with survive("commands"):  # a poisoned entry is acked and skipped
                    if start != ">" and (fields is None or self._stale(entry_id)):  # trimmed
                        continue
                    cmd = decode_entry(fields)
                    await self.execute_command(cmd.id, cmd.type, cmd.data)
                self._to_ack.setdefault(stream, []).append(entry_id)
                count += 1
        return count

    def _stale(self, entry_id: bytes) -> bool:
        """Whether a backlog entry is older than a transaction's lifetime (64*T1): a
        command pending that long (an edge restarted under the same name much later) is for
        a call that has given up, and is acked without running."""
        age = time.time() - int(entry_id.split(b"-")[0]) / 1000
        if age <= self.timers.timeout:
            return False
        log.warning("dropped command entry %r: %.0f s old", entry_id, age)
        return True

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            delay = 0.1
            while True:
                try:
                    await self._publish_batch(batch)
                    self.overload.published(time.monotonic(), bool(self._outbox))
                    break
                except RETRYABLE as exc:
                    log.warning("publishing %d events failed: %s", len(batch), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except Exception as exc:  # not an outage: retrying would fail again
                    failed("flusher", exc)  # the batch is dropped, the flusher goes on
                    break

    async def _publish_batch(self, batch: list[tuple[str, str, Any]]) -> None:
        if not batch:
            return
        pipe = Round(self.redis)
        for op, key, value in batch:
            if op == "xadd":
                pipe.xadd(key, value, maxlen=STREAM_MAXLEN, approximate=True)
            else:
                pipe.set(key, value, ex=int(self.timers.timeout) + 1)
        await pipe.execute()

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            with survive("timers"):
                due = self.layer.get_timer()
                if due is not None and due <= now:
                    self.execute(self.layer.handle_timer(now))
            for key in self.unanswered.expired(now):
                with survive("timers"):
                    self._not_answered(key, now)
            for retx in self.duties.due(now):
                with survive("duties"):
                    self.transports.send(retx.transport, retx.peer, retx.data)

    def _not_answered(self, key: str, now: float) -> None:
        """The workers did not answer this request in time (``Unanswered``): 503, so the
        caller stops waiting and the transaction (and the request it holds) ends."""
        tx = self.layer.servers.get(key)
        if tx is None or tx.final_sent:
            return
        self._dropped("unanswered")
        busy = make_response(
            tx.request,
            503,
            "No answer from the session workers",
            headers=[("Retry-After", "5")],
            to_tag=secrets.token_hex(5),
        )
        self.execute(self.layer.respond(key, busy, now), self._key_transport.get(key, "UDP"))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with survive("heartbeat"), contextlib.suppress(*RETRYABLE):
                await self._beat()

    async def _beat(self) -> None:
        """Heartbeat and registration, a drain request, and the workers' stream lag."""

        def extra(pipe: Any) -> None:
            pipe.hgetall(self.keys.media_capacity())
            for partition in range(self.keys.partitions):
                pipe.xinfo_groups(self.keys.events(partition))

        beat = await self.liveness.beat(extra, errors="return")
        media, *groups = beat.extra
        self.overload.observe_lag(_worker_lag(groups))
        await self._observe_admission(media)
        if beat.drain:
            self.stop()

    async def _observe_admission(self, media: Any) -> None:
        """Media capacity from the nodes' reports; calls held longer than 64*T1 + 10 s are
        dropped when their session's registry entry is gone (a call that ended without SIP
        through this edge, or never got a session)."""
        now = time.monotonic()
        reports = media if isinstance(media, dict) else {}
        self.admission.media.observe({_text(k): _text(v) for k, v in reports.items()}, now)
        stale = self.admission.calls.stale(now, self.timers.timeout + 10.0)
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for call_id, tag in stale:
                pipe.exists(self.keys.initial(call_id, tag))
            found = await pipe.execute(raise_on_error=False)
            for key, exists in zip(stale, found, strict=True):
                if exists == 0:
                    self.admission.release(key)
                else:  # alive, or the check failed: look again later
                    self.admission.calls.checked(key, now)
        metrics.CALLS_HELD.set(len(self.admission.calls))
        metrics.MEDIA_FREE.set(self.admission.media.free if self.admission.media.known else -1)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _mappable(resp: SipResponse) -> bool:
    """False (the response is dropped and counted) for one ``response_event`` cannot map."""
    try:
        check_utf8(resp)
    except SipParseError:
        metrics.child(metrics.SIP_DROPPED, "invalid-utf8").inc()
        return False
    return True


def _worker_lag(replies: list[Any]) -> int:
    """Entries not yet delivered to the workers, summed over the partition streams (XINFO
    GROUPS; a stream that does not exist yet answers an error and counts 0)."""
    lag = 0
    for reply in replies:
        if isinstance(reply, list):
            for group in reply:
                if _text(group.get("name", b"")) == WORKERS_GROUP:
                    lag += int(group.get("lag") or 0)
    return lag


# Methods counted under their own name; any other token a peer sends counts as "other", so
# the metric's label set stays bounded.
_COUNTED_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER UPDATE REFER NOTIFY SUBSCRIBE INFO PRACK MESSAGE "
    "PUBLISH".split()
)


def _kind(msg: SipRequest | SipResponse) -> str:
    if isinstance(msg, SipRequest):
        return msg.method if msg.method in _COUNTED_METHODS else "other"
    return str(msg.status)


def _count(direction: str, kind: str) -> None:
    """Count one SIP message in ``sessiond_sip_messages_total``."""
    metrics.child(metrics.SIP_MESSAGES, direction, kind).inc()
