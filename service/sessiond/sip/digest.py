"""HTTP Digest authentication for SIP (RFC 3261 22.4, RFC 2617, RFC 7616, RFC 8760).

Client side: :class:`DigestClient` answers a 401/407 challenge with an ``Authorization``
/ ``Proxy-Authorization`` value, counting ``nc`` per nonce. Server side:
:class:`DigestServer` issues challenges whose nonce is *stateless*: it carries its issue
time and an HMAC over (time, random, realm) under a server secret, so any worker can
check a nonce and its age without storage. The price of statelessness: a replayed
``nc`` within the nonce lifetime is not detected (pass ``seen`` to
:meth:`DigestServer.verify` to plug in a store if that matters).

::

    A1 = username ":" realm ":" password        (-sess: H(A1) ":" nonce ":" cnonce)
    A2 = Method ":" digest-uri
    response = H( H(A1) ":" nonce ":" nc ":" cnonce ":" qop ":" H(A2) )   ; qop=auth
    response = H( H(A1) ":" nonce ":" H(A2) )                            ; no qop (2069)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sessiond.sip.errors import AuthError
from sessiond.sip.grammar import quote, unquote
from sessiond.sip.message import SipResponse

HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}
# auth-param = token "=" ( token / quoted-string ), separated by commas (RFC 7235 2.1)
AUTH_PARAM_RE = re.compile(
    r'[ \t]*([A-Za-z0-9\-_.!%*+`\'~]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s,"]+)[ \t]*(?:,|$)'
)


def parse_auth(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest k=v, k="v"`` into the scheme and lower-cased, unquoted params."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = AUTH_PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            raise AuthError(f"malformed {scheme} parameters")
        params[m.group(1).lower()] = unquote(m.group(2))
        pos = m.end()
    return scheme, params


def _hash(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix("-SESS")
    if base not in HASHES:
        raise AuthError(f"unsupported digest algorithm {algorithm}")
    return HASHES[base]


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password), what a server may store instead of the password."""
    return _hash(algorithm)(f"{username}:{realm}:{password}".encode())


def digest_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` value of RFC 7616 3.4.1 (qop ``auth`` or none)."""
    h = _hash(algorithm)
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
    ha2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{ha2}".encode())


@dataclass(frozen=True, slots=True)
class Challenge:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        """Parse a challenge header value (the scheme must be Digest)."""
        scheme, p = parse_auth(value)
        if scheme.lower() != "digest" or "realm" not in p or "nonce" not in p:
            raise AuthError("not a Digest challenge with realm and nonce")
        qop = tuple(q.strip() for q in p.get("qop", "").split(",") if q.strip())
        return cls(
            realm=p["realm"],
            nonce=p["nonce"],
            algorithm=p.get("algorithm", "MD5"),
            qop=qop,
            opaque=p.get("opaque"),
            stale=p.get("stale", "").lower() == "true",
        )

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}", f"nonce={quote(self.nonce)}"]
        if self.qop:
            parts.append(f"qop={quote(','.join(self.qop))}")
        parts.append(f"algorithm={self.algorithm}")
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An ``Authorization`` / ``Proxy-Authorization`` Digest answer."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str = ""
    cnonce: str = ""
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        """Parse a credentials header value."""
        scheme, p = parse_auth(value)
        needed = ("username", "realm", "nonce", "uri", "response")
        if scheme.lower() != "digest" or any(k not in p for k in needed):
            raise AuthError("incomplete Digest credentials")
        return cls(
            username=p["username"],
            realm=p["realm"],
            nonce=p["nonce"],
            uri=p["uri"],
            response=p["response"],
            algorithm=p.get("algorithm", "MD5"),
            qop=p.get("qop"),
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
            opaque=p.get("opaque"),
        )

    def __str__(self) -> str:
        parts = [
            f"username={quote(self.username)}",
            f"realm={quote(self.realm)}",
            f"nonce={quote(self.nonce)}",
            f"uri={quote(self.uri)}",
            f"response={quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.qop:
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={quote(self.cnonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


class DigestClient:
    """Answers challenges for one user, keeping the nonce count of each nonce."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._nc: dict[str, int] = {}

    def answer(self, response: SipResponse, method: str, uri: str) -> tuple[str, str]:
        """Header (name, value) answering a 401 or 407 (RFC 3261 22.2, 22.3).

        The caller re-sends the request with this header, a new branch and CSeq + 1.
        """
        if response.status == 401:
            challenge_header, answer_header = "WWW-Authenticate", "Authorization"
        elif response.status == 407:
            challenge_header, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
        else:
            raise AuthError(f"{response.status} is not a challenge")
        for value in response.headers.get_all(challenge_header):
            if value.strip().lower().startswith("digest"):
                challenge = Challenge.parse(value)
                return answer_header, str(self.authorize(challenge, method, uri))
        raise AuthError(f"no Digest {challenge_header} in {response.status}")

    def authorize(
        self, challenge: Challenge, method: str, uri: str, cnonce: str | None = None
    ) -> Credentials:
        """Credentials for ``method`` on ``uri`` (qop=auth when offered)."""
        if challenge.qop and "auth" not in challenge.qop:
            raise AuthError("only qop=auth is supported")
        qop = "auth" if challenge.qop else None
        count = self._nc.get(challenge.nonce, 0) + 1
        self._nc[challenge.nonce] = count
        nc = f"{count:08x}" if qop else ""
        cn = (cnonce or secrets.token_hex(8)) if qop else ""
        ha1 = compute_ha1(challenge.algorithm, self.username, challenge.realm, self.password)
        response = digest_response(
            algorithm=challenge.algorithm,
            ha1=ha1,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cn,
        )
        return Credentials(
            self.username,
            challenge.realm,
            challenge.nonce,
            uri,
            response,
            challenge.algorithm,
            qop,
            nc,
            cn,
            challenge.opaque,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of :meth:`DigestServer.verify`. ``stale``: right password, expired nonce."""

    ok: bool
    username: str = ""
    stale: bool = False
    reason: str = ""


class DigestServer:
    """Stateless challenges and verification for one realm."""

    def __init__(
        self, realm: str, secret: bytes, *, algorithm: str = "SHA-256", nonce_ttl: float = 300.0
    ) -> None:
        _hash(algorithm)
        self.realm = realm
        self.secret = secret
        self.algorithm = algorithm
        self.nonce_ttl = nonce_ttl

    def make_nonce(self, now: float) -> str:
        """``base64url(time "." random "." HMAC)``: checkable without storage."""
        stamp = f"{int(now):x}.{secrets.token_hex(8)}"
        return base64.urlsafe_b64encode(f"{stamp}.{self._mac(stamp)}".encode()).decode()

    def _mac(self, stamp: str) -> str:
        msg = f"{stamp}:{self.realm}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:32]

    def nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since ``nonce`` was issued, or ``None`` if we did not issue it."""
        try:
            stamp_time, rand, mac = base64.urlsafe_b64decode(nonce.encode()).decode().split(".")
            issued = int(stamp_time, 16)
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{stamp_time}.{rand}")):
            return None
        return now - issued

    def challenge(self, now: float, *, stale: bool = False) -> Challenge:
        """A fresh challenge to send in a 401 / 407."""
        return Challenge(self.realm, self.make_nonce(now), self.algorithm, ("auth",), None, stale)

    def verify(
        self,
        value: str,
        method: str,
        now: float,
        ha1_for: Callable[[str], str | None],
        seen: Callable[[Credentials], bool] | None = None,
    ) -> Verdict:
        """Check credentials; ``ha1_for(username)`` returns H(A1) or ``None`` if unknown."""
        try:
            cred = Credentials.parse(value)
        except AuthError as exc:
            return Verdict(False, reason=str(exc))
        if cred.realm != self.realm or cred.algorithm.upper() != self.algorithm.upper():
            return Verdict(False, cred.username, reason="wrong realm or algorithm")
        if cred.qop not in (None, "auth") or (cred.qop and not cred.nc):
            return Verdict(False, cred.username, reason="unsupported qop")
        ha1 = ha1_for(cred.username)
        if ha1 is None:
            return Verdict(False, cred.username, reason="unknown user")
        expected = digest_response(
            algorithm=cred.algorithm,
            ha1=ha1,
            nonce=cred.nonce,
            method=method,
            uri=cred.uri,
            qop=cred.qop,
            nc=cred.nc,
            cnonce=cred.cnonce,
        )
        if not hmac.compare_digest(expected, cred.response.lower()):
            return Verdict(False, cred.username, reason="wrong response")
        age = self.nonce_age(cred.nonce, now)
        if age is None:
            return Verdict(False, cred.username, reason="foreign nonce")
        if age > self.nonce_ttl or age < -5:
            return Verdict(False, cred.username, stale=True, reason="nonce expired")
        if seen is not None and seen(cred):
            return Verdict(False, cred.username, reason="replayed nonce count")
        return Verdict(True, cred.username)
