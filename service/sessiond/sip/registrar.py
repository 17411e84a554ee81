"""A registrar's checks of a REGISTER and its 200 (RFC 3261 10.3, RFC 3327 Path). Sans-I/O.

Theory of operation
-------------------
:func:`read_register` takes a REGISTER that passed the edge's general validation and
digest authentication and returns what it asks for, a :class:`RegisterRequest`, or raises
:class:`RegisterRefused` with the response to send. It follows the steps of 10.3:

* 5. the address-of-record is the To URI in canonical form (``sip:user@domain``: no port,
  no parameters, escapes undone, domain lower-cased); a domain this registrar does not serve
  is 404, an AOR without a user 400.
* 6. ``Contact: *`` must be alone and come with ``Expires: 0`` (else 400). Each contact's
  expiry is its ``expires`` parameter, else the Expires header, else ``default_expires``;
  longer than ``max_expires`` is shortened to it; above zero but shorter than
  ``min_expires`` is refused with 423 and ``Min-Expires``. A value that is not a number is
  400. ``q`` must be 0..1 (400).
* 7. the Call-ID/CSeq order per binding (an older or equal CSeq for the same Call-ID fails,
  500) needs the stored bindings: the store's script checks it atomically
  (``lua/register.lua``) and :func:`out_of_order` makes the answer.
* 8. :func:`ok_response` is the 200 with every current binding of the AOR and its
  ``expires``, a Date header, and (RFC 3327 5.3) the Path of the request when the UA said
  ``Supported: path``.

Path (RFC 3327 5.3): a REGISTER with Path whose Supported does not name ``path`` is
refused with 420 Bad Extension and ``Unsupported: path`` (the registrar's "strict" mode the
RFC recommends; an edge proxy in front of a phone that does not say it may add
``Supported: path`` itself). Each Path value must be a SIP URI with ``;lr``: a strict
router (no ``lr``) is refused with 400, as sessiond preloads the Path as Route headers of
the requests to the contact and only loose routing is supported (:func:`strict_hop`).

A REGISTER without Contact is a query: it changes nothing and gets the current bindings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import unquote as pct_unquote

from sessiond.sip.address import NameAddr
from sessiond.sip.errors import SipError, SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.uri import SipUri

#: Expires values above this are read as this (RFC 3261 20.19: up to 2**32-1 is valid).
EXPIRES_CEILING = 2**32 - 1


class RegisterRefused(SipError):
    """A REGISTER refused with ``status`` ``reason`` and extra ``headers``."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        self.status = status
        self.reason = reason
        self.headers = headers
        super().__init__(f"{status} {reason}")


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """The domains served and the expiry bounds (seconds)."""

    domains: frozenset[str]
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10  # bindings one AOR may hold

    def serves(self, domain: str) -> bool:
        return domain.lower() in self.domains


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    """One Contact of a REGISTER: its URI (the binding's identity), the expiry granted
    (0: remove) and its q-value (``None`` when the UA gave none)."""

    uri: str
    expires: int
    q: float | None = None
    instance: str = ""  # +sip.instance (RFC 5626), kept for flows and GRUU later
    reg_id: str = ""


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    aor: str  # canonical: sip:user@domain
    user: str
    domain: str
    call_id: str
    cseq: int
    wildcard: bool  # Contact: * with Expires: 0: remove every binding
    contacts: tuple[ContactUpdate, ...]  # empty and not wildcard: a query
    path: tuple[str, ...]  # Path header values, in order
    supports_path: bool  # the UA said Supported: path


def canonical_aor(to: str) -> SipUri:
    """The To URI as an AOR (10.3 step 5): parameters, port and headers removed, escapes
    undone, the domain lower-cased; ``sips:`` stays."""
    uri = SipUri.parse(to)
    user = pct_unquote(uri.user) if uri.user is not None else None
    return SipUri(uri.scheme, uri.host.lower(), user)


def read_register(req: SipRequest, policy: RegistrarPolicy) -> RegisterRequest:
    """What a REGISTER asks for; :class:`RegisterRefused` when it cannot be served."""
    to = req.to_addr
    if to is None or req.cseq is None or not req.call_id:
        raise RegisterRefused(400, "Bad Request")
    try:
        aor = canonical_aor(to.uri)
    except SipParseError as exc:
        raise RegisterRefused(exc.status, exc.reason) from exc
    if not policy.serves(aor.host):
        raise RegisterRefused(404, "Not Found (domain not served here)")
    if not aor.user:
        raise RegisterRefused(400, "Bad Request (the To URI has no user)")
    path = tuple(req.header_values("path"))
    supports_path = "path" in (t.lower() for t in req.option_tags("supported"))
    if path and not supports_path:
        raise RegisterRefused(420, "Bad Extension", (("Unsupported", "path"),))
    strict = strict_hop(path)
    if strict is not None:
        raise RegisterRefused(400, f"Bad Request (Path {strict} is not a loose router: ;lr needed)")
    header_expires = _expires_header(req)
    wildcard, contacts = _contacts(req, header_expires, policy)
    if len(contacts) > policy.max_contacts:
        raise RegisterRefused(403, f"Forbidden (at most {policy.max_contacts} contacts)")
    return RegisterRequest(
        aor=f"{aor.scheme}:{aor.user}@{aor.host}",
        user=aor.user,
        domain=aor.host,
        call_id=req.call_id,
        cseq=req.cseq.seq,
        wildcard=wildcard,
        contacts=tuple(contacts),
        path=path,
        supports_path=supports_path,
    )


def strict_hop(path: Sequence[str]) -> str | None:
    """The first Path value that is not a loose-routing SIP URI (no ``;lr``, not a SIP
    URI, or unreadable), or None when every hop routes loosely. Strict routers (RFC 2543,
    RFC 3261 12.2.1.1's Request-URI rewriting) are not supported."""
    for value in path:
        try:
            uri = SipUri.parse(NameAddr.parse(value, "Path").uri)
        except SipParseError:
            return value[:100]
        if not uri.lr:
            return value[:100]
    return None


def _expires_header(req: SipRequest) -> int | None:
    value = req.header("expires")
    if value is None:
        return None
    return _seconds(value.strip(), "Expires")


def _seconds(text: str, what: str) -> int:
    # Expires = "Expires" HCOLON delta-seconds; delta-seconds = 1*DIGIT (20.19)
    if not text.isdigit():
        raise RegisterRefused(400, f"Bad Request (invalid {what})")
    return min(int(text), EXPIRES_CEILING)


def _contacts(
    req: SipRequest, header_expires: int | None, policy: RegistrarPolicy
) -> tuple[bool, list[ContactUpdate]]:
    values = req.headers.values("contact")
    if "*" in (v.strip() for v in values):
        if len(values) != 1 or header_expires != 0:
            raise RegisterRefused(400, "Bad Request (Contact: * needs Expires: 0 and no other)")
        return True, []
    try:
        addresses = [NameAddr.parse(v, "Contact") for v in values]
        for addr in addresses:
            SipUri.parse(addr.uri)
    except SipParseError as exc:
        raise RegisterRefused(400, f"Bad Request (Contact: {exc.problem})") from exc
    out: dict[str, ContactUpdate] = {}  # a contact listed twice: the last one counts
    for addr in addresses:
        out[addr.uri] = _contact(addr, header_expires, policy)
    return False, list(out.values())


def _contact(addr: NameAddr, header_expires: int | None, policy: RegistrarPolicy) -> ContactUpdate:
    param = addr.param("expires")
    if param is not None:
        expires = _seconds(param, "expires parameter")
    elif header_expires is not None:
        expires = header_expires
    else:
        expires = policy.default_expires
    if 0 < expires < policy.min_expires:
        raise RegisterRefused(
            423, "Interval Too Brief", (("Min-Expires", str(policy.min_expires)),)
        )
    q = _q(addr.param("q"))
    return ContactUpdate(
        addr.uri,
        min(expires, policy.max_expires),
        q,
        (addr.param("+sip.instance") or "").strip('"'),
        addr.param("reg-id") or "",
    )


def _q(text: str | None) -> float | None:
    # qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )  (20.10)
    if text is None:
        return None
    try:
        q = float(text)
    except ValueError:
        q = -1.0
    if not 0.0 <= q <= 1.0 or not math.isfinite(q):
        raise RegisterRefused(400, "Bad Request (invalid q-value)")
    return q


@dataclass(frozen=True, slots=True)
class Current:
    """A binding as the 200 lists it."""

    uri: str
    expires: int  # seconds left
    q: float | None = None


def contact_value(binding: Current) -> str:
    out = f"<{binding.uri}>;expires={max(binding.expires, 0)}"
    if binding.q is not None:
        out += f";q={binding.q:g}"
    return out


def ok_response(
    req: SipRequest,
    register: RegisterRequest,
    bindings: Iterable[Current],
    wall: float,
    to_tag: str,
) -> SipResponse:
    """The 200 of 10.3 step 8: every current binding (highest q first), Date, and the Path
    of the request when the UA supports it (RFC 3327 5.3)."""
    ordered = sorted(bindings, key=lambda b: -1.0 if b.q is None else -b.q)  # no q: 1.0
    headers = [("Contact", contact_value(b)) for b in ordered]
    if register.supports_path:
        headers += [("Path", p) for p in register.path]
        headers.append(("Supported", "path"))
    headers.append(("Date", formatdate(wall, usegmt=True)))
    return make_response(req, 200, "OK", to_tag=to_tag, headers=headers)


def refused_response(req: SipRequest, refused: RegisterRefused, to_tag: str) -> SipResponse:
    return make_response(
        req, refused.status, refused.reason, to_tag=to_tag, headers=list(refused.headers)
    )


def out_of_order() -> RegisterRefused:
    """10.3 step 7: a REGISTER older than (or as old as) the binding it would change."""
    return RegisterRefused(500, "Server Internal Error (CSeq out of order)")
