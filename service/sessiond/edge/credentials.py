"""Our own digest credentials, for the requests this edge sends (REGISTER, INVITE). Sans-I/O.

A credentials file (``--credentials FILE``) holds one account a line, as shell-style
``key=value`` words (quote a value that holds spaces; ``#`` comments, blank lines ignored)::

    user=alice password=s3cret realm=pbx.example.com    # only for challenges of that realm
    user=trunk password="two words"                      # any realm

``user`` and ``password`` are required; ``realm`` is optional. A challenge is answered with
the first line of the best kind: same realm and same user as the request's From (or the
AOR), same realm, no realm and same user, no realm. Nothing secret is ever logged.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from sessiond.core.errors import SessiondError
from sessiond.sip.digest import Challenge, DigestClient
from sessiond.sip.errors import AuthError
from sessiond.sip.message import SipRequest, SipResponse
from sessiond.sip.registration import with_credentials
from sessiond.sip.uri import SipUri, parse_uri

#: challenge header -> the header that answers it (RFC 3261 22.2, 22.3)
ANSWERS = {"www-authenticate": "Authorization", "proxy-authenticate": "Proxy-Authorization"}


class CredentialsError(SessiondError):
    """A credentials file is invalid (messages name the file and line)."""


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    password: str = ""
    realm: str | None = None

    def __repr__(self) -> str:  # never the password
        return f"Account(user={self.user!r}, realm={self.realm!r})"


def load_credentials(path: str | Path) -> CredentialStore:
    """Read a credentials file; every problem is reported as ``file:line: message``."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CredentialsError(f"{path}:0: cannot read: {exc.strerror}") from exc
    accounts, problems = [], []
    for number, line in enumerate(lines, 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        if not words:
            continue
        fields = dict(w.partition("=")[::2] for w in words)
        unknown = sorted(set(fields) - {"user", "password", "realm"})
        if unknown or any("=" not in w for w in words):
            problems.append(f"{path}:{number}: expected user=NAME password=SECRET [realm=REALM]")
        elif not fields.get("user") or not fields.get("password"):
            problems.append(f"{path}:{number}: user and password are both required")
        else:
            accounts.append(Account(fields["user"], fields["password"], fields.get("realm")))
    if problems:
        raise CredentialsError("\n".join(problems))
    return CredentialStore(accounts)


def uri_user(text: str) -> str:
    """The user part of a SIP URI (or name-addr), ``""`` when there is none."""
    text = text.strip()
    if "<" in text:
        text = text[text.index("<") + 1 : text.rindex(">")]
    try:
        uri = parse_uri(text)
    except SessiondError:
        return ""
    return (uri.user or "") if isinstance(uri, SipUri) else ""


class CredentialStore:
    """The accounts of one edge, and the digest answers built from them."""

    def __init__(self, accounts: list[Account] | None = None) -> None:
        self.accounts = list(accounts or [])

    def find(self, realm: str, user: str = "") -> Account | None:
        """The account that answers a challenge of ``realm`` for a request from ``user``."""
        ranked = (
            lambda a: a.realm == realm and a.user == user,
            lambda a: a.realm == realm,
            lambda a: a.realm is None and a.user == user,
            lambda a: a.realm is None,
        )
        for fits in ranked:
            for account in self.accounts:
                if fits(account):
                    return account
        return None

    def answerable(self, response: SipResponse) -> str:
        """The user that would answer this 401/407 (``""``: no Digest challenge we can
        answer), for the state table to decide whether to retry."""
        user = uri_user(response.header("from") or "")
        for challenge in challenges(response):
            account = self.find(challenge.realm, user)
            if account is not None:
                return account.user
        return ""

    def authorize(
        self, request: SipRequest, code: int, values: list[str]
    ) -> tuple[SipRequest, int]:
        """``request`` with an answer to each challenge (the header values of a 401 or 407)
        we hold an account for, and how many were answered."""
        header = ANSWERS["www-authenticate" if code == 401 else "proxy-authenticate"]
        user = uri_user(request.header("from") or "")
        answered = 0
        for value in values:
            try:
                challenge = Challenge.parse(value)
            except AuthError:
                continue
            account = self.find(challenge.realm, user)
            if account is None:
                continue
            client = DigestClient(account.user, account.password)
            try:
                creds = client.authorize(challenge, request.method, request.uri)
            except AuthError:
                continue
            request = with_credentials(request, header, str(creds))
            answered += 1
        return request, answered


def challenges(response: SipResponse) -> list[Challenge]:
    """The Digest challenges of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate)."""
    name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
    out = []
    for value in response.headers.get_all(name):
        try:
            out.append(Challenge.parse(value))
        except AuthError:
            continue
    return out
