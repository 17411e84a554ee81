"""The edge process: SIP on the wire, events and commands on Redis. The asyncio adapter.

Theory of operation
-------------------
Inbound, each datagram or framed TCP message is parsed; bad input gets a stateless error
response (or is dropped when nothing can be answered) and never reaches the workers. Valid
messages go through the sans-I/O :class:`~sessiond.sip.transaction.TransactionLayer`,
which absorbs retransmissions and hands new requests and responses to the sans-I/O
transaction user (:class:`~sessiond.edge.tu.TransactionUser`), which decides what to do:
this module only carries its outcomes out (transmit, publish, count). An INVITE's 100
Trying goes out only when no response has gone out within ``trying_delay`` (180 ms: RFC
3261 17.2.1 asks for it when the TU will not answer within 200 ms): most calls ring sooner,
which saves a send. New requests and responses become events on the partition stream of
their Call-ID, published in order by one flusher (:class:`~sessiond.edge.outbox.Outbox`).

Timers: one timer is armed (``loop.call_later``) for the earliest deadline of the
transaction layer (``get_timer()``), the dialog duties and the requests the workers have
not answered; it is re-armed after every input and after each firing, and fires at least
once a second (what tests or the registrar add behind the adapter's back is not lost).
Before it fires anything it reads the datagrams already queued on the UDP sockets: the event
loop services due timers before polling the sockets (uvloop) or between one datagram and the
next (asyncio), so under load a 200 waiting in the socket let Timer A send the INVITE again,
and a callee that had answered dropped the call (RFC 3261 17.1.1.2: the response stops it).

Outbound, commands from the state tables arrive on this edge's command streams
(:class:`~sessiond.edge.commands.CommandReader`) and become requests and responses. A
response whose server transaction is gone (this edge restarted) is sent statelessly to the
address recorded in the session's ``txn``.

Soon after a (re)start a request may retransmit one answered before: until 64*T1 have
passed (and the queue is empty), requests go through one ordered queue that looks their
stored answer up in Redis first (one round trip per batch), so no request overtakes another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sessiond.core import metrics
from sessiond.core.addresses import HostPort, reachable_host
from sessiond.core.messages import Respond, SendInvite, SendRequest
from sessiond.edge.access import AccessPolicy
from sessiond.edge.admission import Admission
from sessiond.edge.commands import CommandReader, EdgeCommand
from sessiond.edge.counts import count as _count
from sessiond.edge.counts import dropped as _dropped
from sessiond.edge.counts import kind as _kind
from sessiond.edge.credentials import CredentialStore
from sessiond.edge.flows import Flow, Flows
from sessiond.edge.loops import survive
from sessiond.edge.mapping import ALLOWED, Local, request_destination
from sessiond.edge.outbox import Outbox
from sessiond.edge.overload import OverloadGuard
from sessiond.edge.ratelimit import SourceRateLimiter
from sessiond.edge.registrar import Received, Registrar, RegistrarConfig
from sessiond.edge.registrar_client import OutboundConfig, RegistrarClient
from sessiond.edge.tls import TlsContexts
from sessiond.edge.transport import Address, ListenSpec, Transports
from sessiond.edge.tu import (
    ClientInfo,
    Drop,
    Outcome,
    Publish,
    Register,
    Reply,
    TransactionUser,
    Transmit,
)
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
from sessiond.sip.stateless import error_response
from sessiond.sip.timers import TimerConfig
from sessiond.sip.transaction import TransactionLayer
from sessiond.store.client import RETRYABLE, is_embedded
from sessiond.store.keys import EDGE_GROUP, Keys
from sessiond.store.liveness import Liveness, edge_beat
from sessiond.store.queries import exist, get_many
from sessiond.store.streams import cancel_and_wait, retrying

log = logging.getLogger("sessiond.edge")
GROUP = EDGE_GROUP
ALLOW = ALLOWED
MAX_MESSAGE = 65_535
IDLE_TICK = 1.0  # the longest the timer sleeps
PENDING_READS = 4096  # datagrams per UDP socket read before the timers fire (a 4 MB buffer)
REGISTER_TIMEOUT = 10.0  # a REGISTER the location store has not settled by then gets 503


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
        tls: TlsContexts | None = None,
        advertise: Sequence[HostPort | None] = (),
        registrar: RegistrarConfig | None = None,
    ) -> None:
        self.max_message = max_message
        self.tls = tls
        self.flows = Flows()
        self.redis = redis
        self.keys = keys
        self.name = name
        self.presence = Liveness(redis, keys, "edge", name)
        self.listen = listen
        self.advertise = list(advertise)  # per listener: the address to name in headers
        self.timers = timers or TimerConfig()
        self.layer = TransactionLayer(self.timers, trying_delay=trying_delay)
        self.transports = Transports(
            self.on_message,
            idle_timeout=tcp_idle_timeout,
            message_timeout=tcp_message_timeout,
            max_connections=max_connections,
            on_drop=_dropped,
            tls=tls,
            on_closed=lambda transport, peer: self.flows.closed((transport, peer)),
        )
        self.overload = OverloadGuard(shed_lag, shed_delay)
        self.access = access or AccessPolicy()
        self.admission = Admission() if admission is None else admission
        # our own accounts (challenges to our INVITEs) and registrations / keepalives
        self.credentials = outbound.credentials if outbound else CredentialStore()
        self.tu = TransactionUser(
            self.layer,
            keys,
            name,
            timers=self.timers,
            access=self.access,
            admission=self.admission,
            limiter=SourceRateLimiter(rate_limit, rate_burst),
            overload=self.overload,
            credentials=self.credentials,
            max_message=max_message,
            max_transactions=max_transactions,
            started=time.monotonic(),
            registrar=registrar is not None,
            served=registrar.policy.domains if registrar is not None else frozenset(),
        )
        # the registrar of --registrar domains (REGISTERs answered by tasks, kept here)
        self.serving = (
            Registrar(registrar, redis, keys, self.access.throttle) if registrar else None
        )
        self._registers: set[asyncio.Task[None]] = set()
        self.duties = self.tu.duties
        self.unanswered = self.tu.unanswered
        self.locals: dict[str, Local] = {}
        self.stopping = asyncio.Event()
        self._key_transport: dict[str, str] = {}
        self._source: Address | None = None  # where the message being handled came from
        self.outbox = Outbox(redis, keys, self.overload, self.timers.timeout)
        self._early: asyncio.Queue[tuple[RequestReceived, str]] = asyncio.Queue()
        self._early_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed = float("inf")  # when the timer fires
        self._ticking = False  # between start and stop: timers are armed
        self.commands = CommandReader(
            redis,
            [keys.edge_commands(name), keys.edge_commands("any")],
            name,
            self.execute_command,
            batch=command_batch,
            max_age=self.timers.timeout,
            poll=0.002 if is_embedded(redis) else 0.0,
            stopping=self.stopping,
        )
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
        for i, spec in enumerate(self.listen):
            bound = await self.transports.listen(spec)
            advertised = self.advertise[i] if i < len(self.advertise) else None
            local = Local(
                reachable_host(bound.host, advertised),
                advertised.port if advertised and advertised.port else bound.port,
                bound.transport,
                self.name,
            )
            self.locals.setdefault(bound.transport, local)
            log.info(
                "edge %s listening on %s:%s:%s, advertised as %s:%s",
                self.name,
                bound.transport.lower(),
                bound.host,
                bound.port,
                local.host,
                local.port,
            )
        await retrying(
            self._beat, stopping=self.stopping, recreate_groups=self.start_groups, log=log
        )
        if self.serving is not None:
            await retrying(
                self.serving.start,
                stopping=self.stopping,
                recreate_groups=self.start_groups,
                log=log,
            )

    async def start_groups(self) -> None:
        await self.commands.start_groups()

    async def run(self) -> None:
        await self.start()
        loops = [
            *(self.commands.run(s) for s in self.commands.streams),
            self.outbox.flusher(),
            self._heartbeat(),
        ]
        if self.registrar is not None:
            addresses = {t: (local.host, local.port) for t, local in self.locals.items()}
            self.registrar.start(addresses, time.monotonic())
            loops.append(self.registrar.run())
        if self.serving is not None:
            loops.append(self.serving.census())
        tasks = [asyncio.create_task(loop) for loop in loops]
        self._ticking = True
        self._arm(force=True)
        try:
            await self.stopping.wait()
        finally:
            if self.registrar is not None:  # unregister while the timers still run
                await self.registrar.stop()
            if self._early_task is not None:
                tasks.append(self._early_task)
            tasks += self._registers
            await cancel_and_wait(tasks)
            self._ticking = False
            if self._timer is not None:
                self._timer.cancel()
            # Commands already queued (say, the 200 for a BYE just received) still go out,
            # and the events already received are still published, before the sockets close.
            with contextlib.suppress(*RETRYABLE):
                await asyncio.wait_for(self._drain(), 2.0)
            self.transports.close()
        with contextlib.suppress(Exception):
            await self.presence.leave()

    def stop(self) -> None:
        self.stopping.set()

    @property
    def started(self) -> float:
        """When the edge started (its first 64*T1 look stored answers up)."""
        return self.tu.started

    @started.setter
    def started(self, value: float) -> None:
        self.tu.started = value

    @property
    def address(self) -> Local:
        return self.locals.get("UDP") or next(iter(self.locals.values()))

    # -- inbound --------------------------------------------------------------------------
    def on_message(self, data: bytes, transport: str, source: Address) -> None:
        if len(data) <= 4 and transport == "UDP":  # a keepalive (CRLF, 4 bytes): no answer
            _dropped("keepalive")
            return
        if len(data) > self.max_message:
            self._stateless_error(data, transport, source, SipParseError(513, "Message Too Large"))
            return
        try:
            msg = parse_message(data, stream=transport != "UDP")
        except SipParseError as exc:
            self._stateless_error(data, transport, source, exc)
            return
        now = time.monotonic()
        if isinstance(msg, SipRequest):
            addresses = [(local.host, local.port) for local in self.locals.values()]
            refused = self.tu.screen(msg, len(data), addresses, source, now)
            if refused is not None:
                if refused.why:
                    _dropped(refused.why)
                self._stateless_error(data, transport, source, refused.error)
                return
            if transport != "UDP":
                self.flows.learn(msg, (transport, source))
        elif not self.tu.mappable(msg):
            _dropped("invalid-utf8")
            return
        _count("in", _kind(msg))
        self._source = source  # a response's, for a Contact behind NAT (edge/nat.py)
        self.execute(self.layer.receive(msg, source, now, reliable=transport != "UDP"), transport)
        self._arm()

    def _stateless_error(
        self, data: bytes, transport: str, source: Address, exc: SipParseError
    ) -> None:
        response = error_response(data, exc)
        if response is None:
            _dropped("unparseable")
            return
        _count("out", f"{exc.status}")
        self.transports.send(transport, source, response)

    def execute(self, actions: list[Action], transport: str = "UDP") -> None:
        """Carry out the transaction layer's actions."""
        registrar = self.registrar
        for action in actions:
            if isinstance(action, Send):
                via = self._key_transport.get(action.key, transport)
                msg = action.message
                data = self.tu.wire(msg)
                if isinstance(msg, SipResponse) and msg.status >= 200:
                    self.outbox.remember(self.tu.answer_key(msg), data)
                _count("out", _kind(msg))
                self.transports.send(via, action.peer, data)
            elif isinstance(action, RequestReceived):
                self._key_transport[action.key] = transport
                self._on_request(action, transport)
            elif isinstance(action, ResponseReceived):
                if registrar is not None and registrar.owns(action.key):
                    registrar.on_response(action.key, action.response)
                else:
                    self.carry_out(self.tu.on_response(action.response, self._source), transport)
            elif isinstance(action, StrayMessage):
                self.carry_out(self.tu.on_stray(action.message, transport), transport)
            elif isinstance(action, TimedOut):
                if registrar is not None and registrar.owns(action.key):
                    registrar.on_timeout(action.key)
                else:
                    self.carry_out(self.tu.on_timeout(action.key), transport)
            elif isinstance(action, Terminated):
                self._key_transport.pop(action.key, None)
                self.tu.on_terminated(action.key)
                if registrar is not None:
                    registrar.forget(action.key)

    def carry_out(self, outcomes: list[Outcome], transport: str = "UDP") -> None:
        """Carry out the transaction user's decisions, in order."""
        for out in outcomes:
            if isinstance(out, Reply):
                key = out.key
                via = self._key_transport.get(key, transport)
                self.execute(self.layer.respond(key, out.response, time.monotonic()), via)
            elif isinstance(out, Publish):
                self.outbox.publish(out.event)
            elif isinstance(out, Drop):
                _dropped(out.why)
            elif isinstance(out, Transmit):
                self.transports.send(out.transport, out.peer, out.data)
            elif isinstance(out, Register):
                task = asyncio.get_running_loop().create_task(self._register(out))
                self._registers.add(task)
                task.add_done_callback(self._registers.discard)

    async def _register(self, out: Register) -> None:
        """Answer a REGISTER (the registrar's Redis round trips), through its transaction."""
        assert self.serving is not None
        came = Received(self.name, out.transport, out.peer)
        try:
            resp = await asyncio.wait_for(
                self.serving.handle(out.request, came, time.time()), REGISTER_TIMEOUT
            )
        except Exception as exc:  # Redis unreachable, failing or slow: the UA retries later
            log.warning("REGISTER from %s:%s not served: %s", *out.peer, exc)
            resp = make_response(
                out.request,
                503,
                "Service Unavailable (location store)",
                headers=[("Retry-After", "5")],
                to_tag=secrets.token_hex(5),
            )
        with survive("register"):
            self.carry_out([Reply(out.key, resp)], out.transport)
            self._arm()

    def _on_request(self, action: RequestReceived, transport: str) -> None:
        if self.tu.looks_up_answers(time.monotonic()) or not self._early.empty():
            self._early.put_nowait((action, transport))
            if self._early_task is None:
                self._early_task = asyncio.get_running_loop().create_task(self._early_loop())
            return
        self._handle_request(action, transport)

    def _handle_request(self, action: RequestReceived, transport: str) -> None:
        outcomes = self.tu.on_request(action, transport, time.monotonic(), time.time())
        self.carry_out(outcomes, transport)

    async def _early_loop(self) -> None:
        """The queued requests in arrival order, their stored answers looked up in one round
        trip per batch (one GET per request made the edge's first 64*T1 its slowest)."""
        while True:
            batch = [await self._early.get()]
            while not self._early.empty():
                batch.append(self._early.get_nowait())
            keys = [self.tu.answer_key(action.request) for action, _ in batch]
            stored: list[Any] = [None] * len(batch)
            if any(keys):
                try:
                    found = iter(await get_many(self.redis, [k for k in keys if k], "return"))
                    stored = [next(found) if key else None for key in keys]
                except Exception as exc:  # a failed lookup must never stop this loop
                    log.warning("looking up %d stored answers failed: %s", len(batch), exc)
            for (action, transport), answer in zip(batch, stored, strict=True):
                with survive("early"):  # one failing request must not stop the queue
                    replay = self.tu.replay(action, answer)
                    if replay is not None:
                        _count("in", "retransmission-after-restart")
                        self.carry_out([replay], transport)
                    else:
                        self._handle_request(action, transport)
            self._arm()

    # -- the timer ------------------------------------------------------------------------
    def _arm(self, *, force: bool = False) -> None:
        """Arm the one timer for the earliest deadline, unless it already fires sooner."""
        if not self._ticking:
            return
        now = time.monotonic()
        due = self.tu.next_deadline()
        when = min(due if due is not None else now + IDLE_TICK, now + IDLE_TICK)
        if not force and when >= self._armed:
            return  # it fires sooner, and re-arms then
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = asyncio.get_running_loop().call_later(max(0.0, when - now), self._fire)

    def _fire(self) -> None:
        """Fire every transaction timer, unanswered request and dialog duty due now."""
        self._timer = None
        try:
            with survive("timers"):  # responses already received stop their timers first
                self.transports.read_pending(PENDING_READS)
            now = time.monotonic()
            with survive("timers"):
                self.execute(self.layer.handle_timer(now))
            expired: list[Outcome] = []
            with survive("timers"):
                expired = self.tu.not_answered(now)
            for out in expired:
                with survive("timers"):
                    self.carry_out([out])
            for retx in self.duties.due(now):
                with survive("duties"):
                    self.transports.send(retx.transport, retx.peer, retx.data)
        finally:
            self._arm(force=True)

    # -- outbound -------------------------------------------------------------------------
    async def execute_command(self, cid: str, kind: str, cmd: EdgeCommand | None) -> None:
        """Carry out a command (None: one :func:`decode_command` could not read, and logged)."""
        if cmd is None:
            return
        try:
            if isinstance(cmd, Respond):
                self._respond(cmd)
            elif isinstance(cmd, SendInvite):
                await self._request("INVITE", cmd)
            elif kind == "ack":
                await self._ack(cmd)
            elif kind != "request":  # bye, cancel
                await self._request(kind.upper(), cmd)
            elif cmd.method:  # an in-dialog request: re-INVITE, UPDATE, REFER...
                await self._request(cmd.method, cmd)
            else:
                log.warning("command %s %s failed: no method", kind, cid)
        except (SipError, ValueError, KeyError, OSError) as exc:
            log.warning("command %s %s failed: %s", kind, cid, exc)
        finally:
            self._arm()

    def _respond(self, cmd: Respond) -> None:
        self.carry_out([self.tu.respond(cmd, self.locals, self.address, time.monotonic())])

    def _flow(self, cmd: SendInvite | SendRequest) -> Flow | None:
        """The open connection the dialog's peer reached us over, if requests to it go back
        over that one (:mod:`~sessiond.edge.flows`)."""
        flow = self.flows.find(cmd.call_id, cmd.remote_tag, routed=bool(cmd.route_set))
        return flow if flow is not None and self.transports.has(*flow) else None

    def _locals(self, flow: Flow | None) -> tuple[dict[str, Local], Local]:
        """(locals, default) naming us in a request: over a flow, its transport's only."""
        if flow is None:
            return self.locals, self.address
        return {}, self.locals.get(flow[0], self.address)

    async def _flow_of(self, cmd: SendInvite | SendRequest) -> Flow | None:
        """The dialog's flow, else the command's ``destination`` (with no route set)."""
        flow = self._flow(cmd)
        if flow is None and cmd.destination and not cmd.route_set:
            flow = await self._destination(cmd.destination)
        return flow

    async def _destination(self, text: str) -> Flow | None:
        """A command's ``destination`` (``TRANSPORT host:port``: a registered phone's
        source, where its REGISTER came from) as the flow its requests go over: a TCP or TLS
        connection from that address is reused by the transport, else one is opened."""
        transport, _, hostport = text.partition(" ")
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        if transport not in ("UDP", "TCP", "TLS") or not host or not port.isdigit():
            log.warning("ignored destination %r (TRANSPORT host:port)", text)
            return None
        if transport not in self.locals:
            log.warning("cannot send to %s: no %s listener", text, transport.lower())
            return None
        peer = (host, int(port))
        if not await self.transports.connect(transport, peer, host):
            return None
        return transport, peer

    async def _resolve(
        self, req: SipRequest, flow: Flow | None = None
    ) -> tuple[str, Address] | None:
        """Where ``req`` goes: (transport, address): over ``flow`` when one is given, else
        as its Route or Request-URI says. Over TCP or TLS the connection is opened first (a
        TLS one verifies the server's certificate for the host name of the URI, and needs a
        TLS listener to name in Via and Contact); None (logged) when it cannot be."""
        if flow is not None:
            return flow
        transport, host, port = request_destination(req)
        if transport == "TLS" and "TLS" not in self.locals:  # our Via and Contact need one
            log.warning("cannot send %s to %s: no tls: listener", req.method, req.uri)
            _dropped("no-tls-listener")
            return None
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        peer = (str(infos[0][4][0]), int(infos[0][4][1]))
        if not await self.transports.connect(transport, peer, host):
            return None
        return transport, peer

    async def _request(self, method: str, cmd: SendInvite | SendRequest) -> None:
        flow = await self._flow_of(cmd)
        req = self.tu.outgoing(cmd, method, *self._locals(flow))
        key = await self.send_own(req, flow)
        self.tu.clients[key] = ClientInfo(cmd.call_id, cmd.local_tag, method, cmd.cseq)

    async def send_own(self, req: SipRequest, flow: Flow | None = None) -> str:
        """Send a request through the transaction layer (the tables' requests, and the
        edge's own REGISTER and OPTIONS keepalives); returns the transaction key its
        responses will carry."""
        where = await self._resolve(req, flow)
        transport, peer = where or (request_destination(req)[0], ("", 0))
        key, actions = self.layer.send_request(
            req, peer, time.monotonic(), reliable=transport != "UDP"
        )
        self._key_transport[key] = transport
        if where is None:  # no connection: a transport error (17.1.4) once the caller knows
            # the key (its owner, the table or the registrar, then hears of it as a timeout)
            asyncio.get_running_loop().call_soon(self._transport_error, key, transport)
            return key
        self.execute(actions, transport)
        self._arm()
        return key

    def _transport_error(self, key: str, transport: str) -> None:
        with survive("transport-error"):
            self.execute(self.layer.transport_error(key), transport)
        self._arm()

    async def _ack(self, cmd: SendRequest) -> None:
        flow = await self._flow_of(cmd)
        req = self.tu.build(cmd, "ACK", *self._locals(flow))
        where = await self._resolve(req, flow)
        if where is None:
            return
        transport, peer = where
        raw = bytes(req)
        _count("out", "ACK")
        self.transports.send(transport, peer, raw)
        key = (cmd.call_id, cmd.cseq)
        self.duties.sent_ack(key, raw, transport, peer, time.monotonic())

    async def _drain(self) -> None:
        await self.commands.drain()
        await self.outbox.flush()

    # -- liveness -------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with survive("heartbeat"), contextlib.suppress(*RETRYABLE):
                await self._beat()

    async def _beat(self) -> None:
        """Heartbeat and registration, a drain request, and the workers' stream lag."""
        drain, media, lag = await edge_beat(self.presence, self.keys)
        self.overload.observe_lag(lag)
        await self._observe_admission(media)
        if drain:
            self.stop()

    async def _observe_admission(self, media: dict[str, str]) -> None:
        """Media capacity from the nodes' reports; calls held longer than 64*T1 + 10 s are
        dropped when their session's registry entry is gone (a call that ended without SIP
        through this edge, or never got a session)."""
        now = time.monotonic()
        self.admission.media.observe(media, now)
        stale = self.admission.calls.stale(now, self.timers.timeout + 10.0)
        if stale:
            found = await exist(self.redis, [self.keys.initial(*k) for k in stale])
            for key, exists in zip(stale, found, strict=True):
                if exists == 0:
                    self.admission.release(key)
                else:  # alive, or the check failed: look again later
                    self.admission.calls.checked(key, now)
        metrics.CALLS_HELD.set(len(self.admission.calls))
        metrics.MEDIA_FREE.set(self.admission.media.free if self.admission.media.known else -1)
