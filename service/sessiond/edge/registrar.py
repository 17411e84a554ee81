"""The edge as a registrar (``--registrar DOMAIN[,DOMAIN]``): REGISTERs for the served
domains are answered here, with digest authentication against the users in Redis and the
bindings in the location store. Any edge may take any REGISTER.

Theory of operation
-------------------
The transaction user hands a REGISTER over (:class:`~sessiond.edge.tu.Register`) and the edge
runs :meth:`Registrar.handle` as a task while the server transaction absorbs retransmissions;
its answer goes out through that transaction. The steps (RFC 3261 10.3):

1. the To domain must be served (404 otherwise); a source locked out by the shared
   :class:`~sessiond.edge.admission.AuthThrottle` (``--auth-max-failures`` within
   ``--auth-failure-window``, ``--auth-lockout``) gets 403 whatever it sends;
2. no ``Authorization`` (or one for another realm): 401 with a challenge per algorithm of
   ``--registrar-algorithms``, preferred first (RFC 8760 2.4), realm = the domain, nonces
   stateless and expiring (:class:`~sessiond.sip.digest.DigestServer`, ``--auth-secret``
   shared by edges): an expired nonce with the right password gets a new challenge with
   ``stale=true``; a wrong answer is counted against the source (metrics by reason) and
   answered 403; the authenticated user must be the AOR's user (403);
3. :func:`~sessiond.sip.registrar.read_register` (400, 423 with Min-Expires, 403);
4. ``lua/register.lua`` applies it (500 for a CSeq out of order, 403 over the limit) and
   the 200 lists every binding the AOR now has.

Redis unreachable: 503 with Retry-After, the REGISTER changed nothing or is retried by the UA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sessiond.core import metrics
from sessiond.edge.admission import AuthThrottle
from sessiond.edge.loops import survive
from sessiond.sip.digest import Credentials, DigestServer
from sessiond.sip.errors import AuthError, SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.registrar import (
    Current,
    RegisterRefused,
    RegisterRequest,
    RegistrarPolicy,
    canonical_aor,
    ok_response,
    out_of_order,
    read_register,
    refused_response,
)
from sessiond.store.client import RETRYABLE
from sessiond.store.keys import Keys
from sessiond.store.location import Binding, Location, census
from sessiond.store.users import Users

log = logging.getLogger("sessiond.edge.registrar")
CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    policy: RegistrarPolicy
    algorithms: tuple[str, ...] = ("MD5",)  # challenges offered, preferred first
    secret: bytes = b""  # nonce secret (--auth-secret); random when empty
    nonce_ttl: float = 300.0


@dataclass(frozen=True, slots=True)
class Received:
    """Where a REGISTER came from: what its bindings record."""

    edge: str
    transport: str
    source: tuple[str, int]
    flow: str = ""  # a connection id, when the transport layer gives one


class Registrar:
    def __init__(
        self, config: RegistrarConfig, redis: Any, keys: Keys, throttle: AuthThrottle
    ) -> None:
        self.config = config
        self.policy = config.policy
        self.location = Location(redis, keys)
        self.users = Users(redis, keys)
        self.throttle = throttle
        # REGISTERs talking to Redis at once: the rest wait here, not for a connection of a
        # pool the edge's other loops share (redis-py's pool refuses past its size)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        secret = config.secret or secrets.token_bytes(32)
        self._servers = {
            domain: [
                DigestServer(domain, secret, algorithm=alg, nonce_ttl=config.nonce_ttl)
                for alg in config.algorithms
            ]
            for domain in config.policy.domains
        }

    async def start(self) -> None:
        await self.users.serve(sorted(self.policy.domains))

    async def census(self, every: float = 30.0) -> None:
        """Every ``every`` seconds: the AORs and bindings held, as gauges."""
        while True:
            with survive("registrar census"), contextlib.suppress(*RETRYABLE):
                aors, bindings = await census(self.location.redis, self.location.keys)
                metrics.REGISTRAR_AORS.set(aors)
                metrics.REGISTRAR_CURRENT.set(bindings)
            await asyncio.sleep(every)

    async def handle(self, req: SipRequest, came: Received, wall: float) -> SipResponse:
        """The final response to a REGISTER (never raises for what the peer sent)."""
        tag = secrets.token_hex(5)
        try:
            async with self._slots:
                return await self._handle(req, came, wall, tag)
        except RegisterRefused as refused:
            return refused_response(req, refused, tag)

    async def _handle(self, req: SipRequest, came: Received, wall: float, tag: str) -> SipResponse:
        to = req.to_addr
        try:
            domain = canonical_aor(to.uri).host if to is not None else ""
        except SipParseError as exc:
            raise RegisterRefused(400, f"Bad Request ({exc.problem})") from exc
        if not self.policy.serves(domain):
            raise RegisterRefused(404, "Not Found (domain not served here)")
        source = came.source[0]
        if self.throttle.locked(source, wall):
            self._failed(source, wall, "locked-out", count=False)
            raise RegisterRefused(403, "Forbidden (too many failed authentications)")
        user = await self._authenticate(req, domain, source, wall, tag)
        if isinstance(user, SipResponse):
            return user
        register = read_register(req, self.policy)
        if user != register.user:
            # the right password for another user: no guess, not counted against the source
            self._failed(source, wall, "not-authorized", count=False)
            raise RegisterRefused(403, "Forbidden (not your address-of-record)")
        return await self._apply(req, register, came, wall, tag)

    async def _authenticate(
        self, req: SipRequest, domain: str, source: str, wall: float, tag: str
    ) -> str | SipResponse:
        """The authenticated user name, or the 401 to send."""
        servers = self._servers[domain]
        cred, value = None, None
        for candidate in req.headers.get_all("authorization"):
            try:
                parsed = Credentials.parse(candidate)
            except AuthError:
                continue
            if parsed.realm == domain:
                cred, value = parsed, candidate
                break
        if cred is None or value is None:
            return self._challenge(req, servers, wall, tag, stale=False)
        server = next((s for s in servers if s.algorithm == cred.algorithm.upper()), None)
        # an algorithm not offered (not challenged for) is refused like a wrong answer
        if server is None:
            self._failed(source, wall, "algorithm")
            raise RegisterRefused(403, "Forbidden")
        ha1 = await self.users.ha1(cred.username, domain, server.algorithm)
        verdict = server.verify(value, "REGISTER", wall, lambda _: ha1)
        if verdict.ok:
            return verdict.username
        if verdict.stale or verdict.reason == "foreign nonce":
            # the right password over a nonce that expired, or that another edge issued
            # under another --auth-secret: a new challenge the UA answers without asking
            return self._challenge(req, servers, wall, tag, stale=True)
        self._failed(source, wall, _reason(verdict.reason))
        raise RegisterRefused(403, "Forbidden")

    def _challenge(
        self, req: SipRequest, servers: list[DigestServer], wall: float, tag: str, *, stale: bool
    ) -> SipResponse:
        headers = [("WWW-Authenticate", str(s.challenge(wall, stale=stale))) for s in servers]
        return make_response(req, 401, "Unauthorized", to_tag=tag, headers=headers)

    def _failed(self, source: str, wall: float, reason: str, *, count: bool = True) -> None:
        metrics.REGISTRAR_AUTH_FAILURES.labels(reason).inc()
        if count:
            metrics.AUTH_FAILURES.inc()
        if count and self.throttle.failed(source, wall):
            metrics.AUTH_LOCKOUTS.inc()

    async def _apply(
        self, req: SipRequest, register: RegisterRequest, came: Received, wall: float, tag: str
    ) -> SipResponse:
        agent = req.header("user-agent") or ""
        source = f"{came.source[0]}:{came.source[1]}"
        if ":" in came.source[0]:
            source = f"[{came.source[0]}]:{came.source[1]}"
        changes: list[tuple[str, int, Binding | None]] = []
        for c in register.contacts:
            binding = None
            if c.expires > 0:
                binding = Binding(
                    contact=c.uri,
                    expires_at=wall + c.expires,
                    call_id=register.call_id,
                    cseq=register.cseq,
                    edge=came.edge,
                    transport=came.transport,
                    source=source,
                    registered_at=wall,
                    q=c.q,
                    flow=came.flow,
                    path=list(register.path),
                    instance=c.instance,
                    reg_id=c.reg_id,
                    user_agent=agent[:200],
                )
            changes.append((c.uri, c.expires, binding))
        applied = await self.location.apply(
            register.user,
            register.domain,
            now=wall,
            call_id=register.call_id,
            cseq=register.cseq,
            wildcard=register.wildcard,
            changes=changes,
            most=self.policy.max_contacts,
        )
        if applied.status == "OUT_OF_ORDER":
            raise out_of_order()
        if applied.status != "OK":
            most = self.policy.max_contacts
            raise RegisterRefused(403, f"Forbidden (at most {most} contacts)")
        metrics.REGISTRAR_BINDINGS.labels("created").inc(applied.created)
        metrics.REGISTRAR_BINDINGS.labels("removed").inc(applied.removed)
        metrics.REGISTRAR_BINDINGS.labels("expired").inc(applied.expired)
        refreshed = sum(1 for c in register.contacts if c.expires > 0) - applied.created
        metrics.REGISTRAR_BINDINGS.labels("refreshed").inc(max(refreshed, 0))
        current = [Current(b.contact, b.expires_in(wall), b.q) for b in applied.bindings]
        return ok_response(req, register, current, wall, tag)


def _reason(text: str) -> str:
    """A verdict's reason as a metric label."""
    return {
        "unknown user": "unknown-user",
        "wrong response": "wrong-password",
        "replayed nonce count": "bad-nonce",
        "wrong realm or algorithm": "algorithm",
        "unsupported qop": "malformed",
    }.get(text, "malformed")
