"""Who may start calls: trusted-source allow lists and digest authentication (RFC 8760 /
RFC 2617, MD5 or SHA-256, qop=auth) for inbound INVITE and REGISTER. Sans-I/O.

An auth file holds one ``username:password`` per line (``#`` comments, blank lines ignored);
only H(A1) is kept in memory and nothing secret is ever logged. Nonces are stateless (an
HMAC over their time, see :class:`~sessiond.sip.digest.DigestServer`) with a per-process
secret unless one is given, so edges behind one address should share ``--auth-secret``.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from sessiond.core import metrics
from sessiond.core.errors import SessiondError
from sessiond.edge.admission import AuthThrottle
from sessiond.sip.digest import DigestServer, compute_ha1
from sessiond.sip.message import SipRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AccessConfigError(SessiondError):
    """An allow list or auth file is invalid (messages name the file and line)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401 (challenge) or 403
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def parse_networks(texts: list[str]) -> list[Network]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise AccessConfigError(f"--allow {text!r}: {exc}") from exc
    return out


def load_users(path: str | Path, realm: str, algorithm: str) -> dict[str, str]:
    """username -> H(A1) from an auth file; errors name ``file:line``."""
    users: dict[str, str] = {}
    problems = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AccessConfigError(f"{path}:0: cannot read: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            problems.append(f"{path}:{number}: expected username:password")
        elif user in users:
            problems.append(f"{path}:{number}: user {user!r} listed twice")
        else:
            users[user] = compute_ha1(algorithm, user, realm, password)
    if problems:
        raise AccessConfigError("\n".join(problems))
    return users


class AccessPolicy:
    def __init__(
        self,
        allow: list[Network] | None = None,
        users: dict[str, str] | None = None,
        *,
        realm: str = "sessiond",
        algorithm: str = "MD5",
        secret: bytes | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self.allow = allow or []
        self.users = users
        self.throttle = AuthThrottle() if throttle is None else throttle
        self.digest = (
            DigestServer(realm, secret or secrets.token_bytes(32), algorithm=algorithm)
            if users is not None
            else None
        )

    def allowed_source(self, host: str) -> bool:
        if not self.allow:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.allow)

    def check(self, req: SipRequest, source: str, now: float) -> Refusal | None:
        """None when ``req`` (a request that starts something) may go on."""
        if not self.allowed_source(source):
            return Refusal(403, "Forbidden")
        if self.digest is None or req.method not in ("INVITE", "REGISTER"):
            return None
        if self.throttle.locked(source, now):  # even a right password: guesses learn nothing
            return Refusal(403, "Forbidden (too many failed authentications)")
        value = req.header("authorization")
        if value is None:
            return self._challenge(now, stale=False)
        verdict = self.digest.verify(value, req.method, now, self._ha1)
        if verdict.ok:
            return None
        if verdict.stale:
            return self._challenge(now, stale=True)
        metrics.AUTH_FAILURES.inc()
        if self.throttle.failed(source, now):
            metrics.AUTH_LOCKOUTS.inc()
        return Refusal(403, "Forbidden")

    def _ha1(self, username: str) -> str | None:
        return None if self.users is None else self.users.get(username)

    def _challenge(self, now: float, *, stale: bool) -> Refusal:
        assert self.digest is not None
        challenge = self.digest.challenge(now, stale=stale)
        return Refusal(401, "Unauthorized", (("WWW-Authenticate", str(challenge)),))
