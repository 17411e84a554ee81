"""The edge's own client requests: registrations and OPTIONS keepalives.

The I/O half of :mod:`sessiond.sip.registration` and :mod:`sessiond.sip.keepalive`. The
requests leave through the edge's transaction layer and socket, so the Contact we register
is the edge's listening address and INVITEs sent to it reach this edge like any other. The
edge hands back the responses and failures of the transactions this client started
(:meth:`RegistrarClient.owns`). One task runs the timers, sends what the cores ask for and
writes their state to Redis (``registration:<aor>``, ``keepalive:<uri>``: plain hash fields,
readable with ``redis-cli HGETALL`` and ``sessiond ctl registrations``). On stop every
binding is removed (REGISTER with Expires: 0) before the edge closes its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sessiond.core import metrics
from sessiond.edge.credentials import CredentialStore, uri_user
from sessiond.edge.loops import survive
from sessiond.sip.errors import SipError, SipParseError
from sessiond.sip.keepalive import Pinger
from sessiond.sip.message import SipRequest, SipResponse
from sessiond.sip.registration import Local, Registration
from sessiond.sip.uri import SipUri
from sessiond.store.client import RETRYABLE
from sessiond.store.keys import Keys
from sessiond.store.queries import write_hashes

log = logging.getLogger("sessiond.edge.registrar")
TTL = 3600  # seconds a state hash outlives its last write (beyond the binding's expiry)


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """What to register and ping (``--register``, ``--register-expires``, ``--keepalive``,
    ``--ping``), and the accounts that answer challenges (``--credentials``)."""

    register: tuple[str, ...] = ()
    expires: int = 3600
    keepalive: float = 0.0  # seconds between OPTIONS to each registrar; 0: none
    ping: tuple[str, ...] = ()
    credentials: CredentialStore = field(default_factory=CredentialStore)

    def check(self, transports: set[str]) -> None:
        """ValueError naming the option when a URI is unusable or needs a transport the edge
        does not listen on."""
        for option, uris in (("--register", self.register), ("--ping", self.ping)):
            for text in uris:
                try:
                    uri = SipUri.parse(text)
                except SipParseError as exc:
                    raise ValueError(f"{option} {text}: not a SIP URI ({exc})") from exc
                transport = uri.wire_transport
                if transport not in transports:
                    raise ValueError(f"{option} {text}: the edge does not listen on {transport}")
                if option == "--register" and not uri.user:
                    raise ValueError(f"{option} {text}: an address-of-record needs a user")
        if self.expires < 1:
            raise ValueError("--register-expires must be at least 1 second")
        if self.keepalive < 0:
            raise ValueError("--keepalive must be >= 0")

    @property
    def active(self) -> bool:
        return bool(self.register or self.ping)


Owner = Registration | Pinger
SendOwn = Callable[[SipRequest], Awaitable[str]]


class RegistrarClient:
    """Every registration and keepalive of one edge."""

    def __init__(
        self,
        config: OutboundConfig,
        redis: Any,
        keys: Keys,
        edge_name: str,
        send: SendOwn,
        *,
        retry_base: float = 30.0,
        retry_max: float = 1800.0,
    ) -> None:
        self.config = config
        self.redis = redis
        self.keys = keys
        self.edge_name = edge_name
        self._send_own = send
        self.retry = (retry_base, retry_max)
        self.registrations: list[Registration] = []
        self.pingers: list[Pinger] = []
        self._txns: dict[str, tuple[Owner, int | str]] = {}  # txn key -> (core, cseq/call-id)
        self._out: list[tuple[Owner, list[SipRequest]]] = []
        self._dirty: set[int] = set()  # ids of cores whose state changed
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, locals_: Mapping[str, tuple[str, int]], now: float) -> None:
        """Create the cores once the edge knows its addresses (transport -> host, port)."""
        for aor in self.config.register:
            uri = SipUri.parse(aor)
            local = _local(uri, locals_)
            user = uri_user(aor)

            def account(realm: str, user: str = user) -> tuple[str, str] | None:
                found = self.config.credentials.find(realm, user)
                return None if found is None else (found.user, found.password)

            reg = Registration(
                aor,
                local,
                credentials=account,
                expires=self.config.expires,
                retry_base=self.retry[0],
                retry_max=self.retry[1],
            )
            self.registrations.append(reg)
            self._queue(reg, reg.start(now))
        targets = list(self.config.ping)
        if self.config.keepalive > 0:
            targets += [r.registrar for r in self.registrations if r.registrar not in targets]
        for target in targets:
            uri = SipUri.parse(target)
            reg_from = next((r for r in self.registrations if r.registrar == target), None)
            pinger = Pinger(
                target,
                _local(uri, locals_),
                interval=self.config.keepalive or 30.0,
                from_uri=str(reg_from.aor) if reg_from else "",
            )
            self.pingers.append(pinger)
            self._queue(pinger, pinger.start(now))

    async def run(self) -> None:
        """Send, fire timers and write the state, until cancelled."""
        while True:
            now = time.monotonic()
            cores: list[Owner] = [*self.registrations, *self.pingers]
            with survive("registrar"):  # a failing step must not end registrations
                for core in cores:
                    due = core.get_timer()
                    if due is not None and due <= now:
                        self._queue(core, core.handle_timer(now))
                await self._flush()
            self._wake.clear()
            due_times = [t for c in cores if (t := c.get_timer()) is not None]
            wait = min([1.0, *(t - time.monotonic() for t in due_times)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.005))

    async def stop(self, timeout: float = 4.0) -> None:
        """Unregister every binding; wait (at most ``timeout`` s) for the registrars' answers.
        Never raises: the edge's shutdown goes on whatever happens here."""
        try:
            await self._unregister_all(timeout)
        except Exception:
            log.exception("unregistering failed")

    async def _unregister_all(self, timeout: float) -> None:
        now = time.monotonic()
        for pinger in self.pingers:
            pinger.stop()
        for reg in self.registrations:
            self._queue(reg, reg.unregister(now))
        self._check_settled()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        for reg in self.registrations:
            if not reg.done:
                log.warning("no answer to the unregistration of %s", reg.aor)
        await self._flush()

    # -- from the edge --------------------------------------------------------------------
    def owns(self, key: str) -> bool:
        return key in self._txns

    def on_response(self, key: str, response: SipResponse) -> None:
        owner, ref = self._txns[key]
        now = time.monotonic()
        if isinstance(owner, Registration):
            if response.is_final:
                metrics.REGISTER_RESPONSES.labels(str(owner.aor), str(response.status)).inc()
            self._queue(owner, owner.on_response(response, now))
        else:
            owner.on_response(response, now)
            self._dirty.add(id(owner))
        if response.is_final:
            self._txns.pop(key, None)
        self._check_settled()

    def on_timeout(self, key: str) -> None:
        owner, ref = self._txns.pop(key)
        if isinstance(owner, Registration):
            self._queue(owner, owner.on_timeout(int(ref), time.monotonic()))
        else:
            owner.on_timeout(str(ref))
            metrics.KEEPALIVE_FAILURES.labels(owner.target).inc()
            self._dirty.add(id(owner))
        self._check_settled()

    def forget(self, key: str) -> None:
        self._txns.pop(key, None)

    # -- inside ---------------------------------------------------------------------------
    def _queue(self, owner: Owner, requests: list[SipRequest]) -> None:
        self._dirty.add(id(owner))
        if requests:
            self._out.append((owner, requests))
        self._wake.set()

    def _check_settled(self) -> None:
        if all(r.done for r in self.registrations):
            self._settled.set()

    async def _flush(self) -> None:
        out, self._out = self._out, []
        for owner, requests in out:
            for req in requests:
                ref: int | str = (
                    (req.call_id or "")
                    if isinstance(owner, Pinger)
                    else req.cseq.seq
                    if req.cseq
                    else 0
                )
                try:
                    key = await self._send_own(req)
                except (OSError, SipError, ValueError) as exc:
                    log.warning("cannot send %s to %s: %s", req.method, req.uri, exc)
                    self._fail_send(owner, ref)
                    continue
                self._txns[key] = (owner, ref)
        if self._dirty:
            await self._write_state()

    def _fail_send(self, owner: Owner, ref: int | str) -> None:
        if isinstance(owner, Registration):
            self._queue(owner, owner.on_timeout(int(ref), time.monotonic(), "cannot send"))
        else:
            owner.on_timeout(str(ref))
        self._check_settled()

    async def _write_state(self) -> None:
        dirty, self._dirty = self._dirty, set()
        writes: list[tuple[str, dict[str, str], int]] = []  # (key, fields, ttl)
        for reg in self.registrations:
            pinger = next((p for p in self.pingers if p.target == reg.registrar), None)
            if id(reg) in dirty or pinger is not None and id(pinger) in dirty:
                fields = {**self._registration_fields(reg), **_ping_fields(pinger)}
                key = self.keys.registration(str(reg.aor))
                writes.append((key, fields, TTL + reg.expires))
                metrics.REGISTERED.labels(str(reg.aor)).set(reg.state == "registered")
        registrars = {r.registrar for r in self.registrations}
        for pinger in self.pingers:
            if id(pinger) in dirty:
                self._ping_metrics(pinger)
                if pinger.target not in registrars:
                    key = self.keys.keepalive(pinger.target)
                    fields = {"target": pinger.target, "edge": self.edge_name}
                    fields["updated_at"] = f"{time.time():.3f}"
                    fields |= _ping_fields(pinger)
                    writes.append((key, fields, TTL + int(3 * pinger.interval)))
        try:
            await write_hashes(self.redis, writes)
        except RETRYABLE as exc:
            log.warning("cannot write the registration state: %s", exc)
            self._dirty |= dirty

    def _registration_fields(self, reg: Registration) -> dict[str, str]:
        expires_at = ""
        if reg.expires_at is not None and reg.state in ("registered", "retrying"):
            expires_at = f"{time.time() + reg.expires_at - time.monotonic():.0f}"
        return {
            "aor": str(reg.aor),
            "registrar": reg.registrar,
            "contact": str(reg.contact),
            "state": reg.state,
            "expires": str(reg.expires),
            "expires_at": expires_at,
            "last_code": str(reg.last_code or ""),
            "last_reason": reg.last_reason,
            "failures": str(reg.failures),
            "registrations": str(reg.registrations),
            "edge": self.edge_name,
            "updated_at": f"{time.time():.3f}",
        }

    def _ping_metrics(self, pinger: Pinger) -> None:
        if pinger.rtt is not None:
            metrics.KEEPALIVE_RTT.labels(pinger.target).set(pinger.rtt)
        if pinger.reachable is not None:
            metrics.KEEPALIVE_REACHABLE.labels(pinger.target).set(pinger.reachable)


def _ping_fields(pinger: Pinger | None) -> dict[str, str]:
    if pinger is None:
        return {}
    reachable = "" if pinger.reachable is None else str(int(pinger.reachable))
    return {
        "reachable": reachable,
        "rtt_ms": "" if pinger.rtt is None else f"{pinger.rtt * 1000:.1f}",
        "ping_failures": str(pinger.failures),
        "pings_answered": str(pinger.answered),
        "ping_code": str(pinger.last_code or ""),
    }


def _local(uri: SipUri, locals_: Mapping[str, tuple[str, int]]) -> Local:
    transport = uri.wire_transport
    host, port = locals_[transport]
    return Local(transport, host, port)
