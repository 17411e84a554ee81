"""A registration as a client: one address-of-record bound to our Contact (RFC 3261 10.2).

Theory of operation
-------------------
:class:`Registration` is sans-I/O. It builds the REGISTER requests and the adapter sends
each through the transaction layer, then feeds back the final response
(:meth:`~Registration.on_response`) or the transaction's failure
(:meth:`~Registration.on_timeout`), and calls :meth:`~Registration.handle_timer` when
:meth:`~Registration.get_timer` is due. Every method returns the requests to send now.

::

    registering --2xx--> registered --refresh due--> (REGISTER) --2xx--> registered
         |  ^ 401/407: answered once per nonce (stale=true: again), 423: Min-Expires
         |  '-------------------------------------------------------------.
         '--other final, timeout, refused credentials--> retrying --backoff--'
    unregister(): REGISTER Expires: 0 (challenges answered) --final/timeout--> unregistered

* All REGISTERs of one registration share the Call-ID and From tag; CSeq goes up by one
  each time (10.2.4). Only the response to the newest request counts.
* The expiry granted is the ``expires`` parameter of our Contact in the 2xx, else its
  Expires header, else what we asked for (10.2.4). The refresh is sent when
  ``max(E/2, min(E - 5, 0.8 E))`` seconds have passed since the REGISTER went out: 80% of
  the interval, at least 5 s before it ends when that still leaves half of it.
* Challenges are answered with the account the ``credentials`` function returns for the
  realm; the last challenge answered is answered again, nonce count + 1, on refreshes
  (saves a round trip; a registrar that refuses it challenges anew). A challenge whose
  nonce we already answered, and that does not say ``stale=true``, means the credentials
  were refused: that is a failure, not a loop.
* Failures wait ``retry_base * 2^(n-1)`` seconds, at most ``retry_max`` (RFC 5626 4.5
  style), or the response's Retry-After when it gives one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sessiond.sip.digest import Challenge, DigestClient
from sessiond.sip.errors import AuthError, SipParseError
from sessiond.sip.message import SipRequest, SipResponse
from sessiond.sip.uri import SipUri

#: (user, password) for a realm, or None
CredentialsFor = Callable[[str], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class Local:
    """How we name ourselves: the Via sent-by and the Contact URI to register."""

    transport: str
    host: str
    port: int

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def refresh_delay(expires: int) -> float:
    """Seconds after sending a REGISTER granted ``expires`` when the refresh goes out."""
    return max(expires / 2, min(expires - 5.0, 0.8 * expires))


def registrar_of(aor: SipUri) -> str:
    """The Request-URI of a REGISTER: the AOR's domain, without the user (10.2)."""
    port = f":{aor.port}" if aor.port else ""
    transport = aor.transport
    params = f";transport={transport.lower()}" if transport else ""
    return f"{aor.scheme}:{aor.host}{port}{params}"


class Registration:
    """One AOR at its registrar."""

    def __init__(
        self,
        aor: str,
        local: Local,
        *,
        credentials: CredentialsFor,
        expires: int = 3600,
        retry_base: float = 30.0,
        retry_max: float = 1800.0,
        user_agent: str = "sessiond",
    ) -> None:
        self.aor = SipUri.parse(aor)
        self.registrar = registrar_of(self.aor)
        self.local = local
        user = self.aor.user or "sessiond"
        suffix = "" if local.transport == "UDP" else f";transport={local.transport.lower()}"
        scheme = "sip"
        if self.aor.scheme == "sips":  # a SIPS AOR registers SIPS contacts (10.2.1)
            scheme, suffix = "sips", ""
        self.contact = SipUri.parse(f"{scheme}:{user}@{local.sent_by}{suffix}")
        self.credentials = credentials
        self.requested = expires
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.user_agent = user_agent
        self.call_id = f"{secrets.token_hex(10)}@{local.host}"
        self.from_tag = secrets.token_hex(5)
        self.cseq = 0
        self.state = "unregistered"
        self.expires = 0  # granted
        self.expires_at: float | None = None  # when the binding ends (the adapter's clock)
        self.last_code = 0
        self.last_reason = ""
        self.failures = 0
        self.registrations = 0  # successful REGISTERs (first and refreshes)
        self._sent_at = 0.0
        self._timer: float | None = None
        self._answered: set[str] = set()  # nonces answered after a challenge
        self._auth: tuple[str, Challenge, DigestClient] | None = None  # header, for refreshes

    # -- adapter side ------------------------------------------------------------------
    def start(self, now: float) -> list[SipRequest]:
        """Send the first REGISTER."""
        self.state = "registering"
        return [self._register(now, self.requested)]

    def unregister(self, now: float) -> list[SipRequest]:
        """Remove our binding (Expires: 0), also when a REGISTER is still on its way (it
        may succeed). Holding none, the registration is at once ``unregistered``."""
        if self.state == "unregistering":
            return []
        self._timer = None
        if self.state in ("registered", "registering"):
            self.state = "unregistering"
            self._answered.clear()
            return [self._register(now, 0)]
        self._ended()
        return []

    @property
    def done(self) -> bool:
        return self.state == "unregistered"

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> list[SipRequest]:
        if self._timer is None or now < self._timer:
            return []
        self._timer = None
        if self.state == "registered":
            return [self._register(now, self.requested)]
        if self.state == "retrying":
            self.state = "registering"
            self._answered.clear()
            return [self._register(now, self.requested)]
        return []

    def on_response(self, response: SipResponse, now: float) -> list[SipRequest]:
        """A final response to one of our REGISTERs (others are ignored)."""
        if response.status < 200 or response.cseq is None or response.cseq.seq != self.cseq:
            return []
        self.last_code, self.last_reason = response.status, response.reason
        if response.status in (401, 407):
            return self._challenged(response, now)
        if self.state == "unregistering":
            self._ended()
            return []
        if 200 <= response.status < 300:
            self._registered(response, now)
            return []
        if response.status == 423:
            return self._too_brief(response, now)
        self._failed(now, _retry_after(response))
        return []

    def on_timeout(
        self, cseq: int, now: float, reason: str = "Request Timeout"
    ) -> list[SipRequest]:
        """Our REGISTER ``cseq`` got no final response (timer F, or a transport error)."""
        if cseq != self.cseq:
            return []
        self.last_code, self.last_reason = 408, reason
        if self.state == "unregistering":
            self._ended()
        else:
            self._failed(now, None)
        return []

    # -- responses ---------------------------------------------------------------------
    def _registered(self, response: SipResponse, now: float) -> None:
        granted = self._granted(response)
        if granted <= 0:
            self.last_reason = "registrar granted no binding"
            self._failed(now, None)
            return
        self.state = "registered"
        self.expires = granted
        self.expires_at = self._sent_at + granted
        self.failures = 0
        self.registrations += 1
        self._timer = self._sent_at + refresh_delay(granted)

    def _granted(self, response: SipResponse) -> int:
        try:
            for contact in response.contacts():
                uri = contact.parsed_uri()
                value = contact.param("expires")
                if isinstance(uri, SipUri) and _same(uri, self.contact) and value:
                    return int(value)
            header = response.header("expires")
            return int(header) if header is not None else self.requested
        except (SipParseError, ValueError):
            return self.requested

    def _challenged(self, response: SipResponse, now: float) -> list[SipRequest]:
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
        problem = "no Digest challenge"
        for value in response.headers.get_all(name):
            try:
                challenge = Challenge.parse(value)
            except AuthError:
                continue
            if challenge.nonce in self._answered and not challenge.stale:
                problem = "credentials refused"
                continue
            account = self.credentials(challenge.realm)
            if account is None:
                problem = f"no credentials for realm {challenge.realm!r}"
                continue
            self._answered.add(challenge.nonce)
            self._auth = (header, challenge, DigestClient(*account))
            expires = 0 if self.state == "unregistering" else self.requested
            return [self._register(now, expires)]
        self.last_reason = problem
        if self.state == "unregistering":
            self._ended()
        else:
            self._auth = None
            self._failed(now, None)
        return []

    def _too_brief(self, response: SipResponse, now: float) -> list[SipRequest]:
        """423 Interval Too Brief: ask again for the registrar's Min-Expires (10.2.8)."""
        try:
            minimum = int(response.header("min-expires") or "0")
        except ValueError:
            minimum = 0
        if minimum <= self.requested:
            self.last_reason = "423 without a usable Min-Expires"
            self._failed(now, None)
            return []
        self.requested = minimum
        return [self._register(now, minimum)]

    def _failed(self, now: float, retry_after: float | None) -> None:
        self.state = "retrying"
        self.failures += 1
        delay = min(self.retry_base * 2 ** (self.failures - 1), self.retry_max)
        self._timer = now + (retry_after if retry_after is not None else delay)

    def _ended(self) -> None:
        self.state = "unregistered"
        self.expires = 0
        self.expires_at = None
        self._timer = None

    # -- requests ----------------------------------------------------------------------
    def _register(self, now: float, expires: int) -> SipRequest:
        self.cseq += 1
        self._sent_at = now
        aor = str(self.aor)
        headers = [
            (
                "Via",
                f"SIP/2.0/{self.local.transport} {self.local.sent_by};branch="
                f"z9hG4bK{secrets.token_hex(8)};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<{aor}>;tag={self.from_tag}"),
            ("To", f"<{aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<{self.contact}>"),
            ("Expires", str(expires)),
            ("User-Agent", self.user_agent),
        ]
        request = SipRequest.create("REGISTER", self.registrar, headers)
        if self._auth is not None:
            header, challenge, client = self._auth
            creds = client.authorize(challenge, "REGISTER", self.registrar)
            request = with_credentials(request, header, str(creds))
        return request


def with_credentials(request: SipRequest, header: str, value: str) -> SipRequest:
    """``request`` with an Authorization / Proxy-Authorization line, before Content-Length."""
    length = request.header("content-length") or str(len(request.body))
    request = request.without_header("content-length").add_header(header, value)
    return request.add_header("Content-Length", length)


def _same(a: SipUri, b: SipUri) -> bool:
    return (a.user, a.host.lower(), a.port or 5060) == (b.user, b.host.lower(), b.port or 5060)


def _retry_after(response: SipResponse) -> float | None:
    value = response.header("retry-after")
    if value is None:
        return None
    try:
        return float(value.split(";")[0].split("(")[0].strip())
    except ValueError:
        return None
