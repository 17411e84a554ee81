"""SIP and SIPS URIs (RFC 3261 19.1) and other absolute URIs (RFC 3986 via 25.1).

::

    SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    hostport = host [ ":" port ]
    uri-parameters = *( ";" uri-parameter )
    headers  = "?" header *( "&" header )

Escapes (``%HH``) are validated but kept as written: RFC 3261 19.1.4 compares URIs after
unescaping, which :meth:`SipUri.key` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote as pct_unquote

from sessiond.sip.errors import SipParseError
from sessiond.sip.memo import Memo

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
# host = hostname / IPv4address / IPv6reference ; port = 1*DIGIT
HOSTPORT_RE = re.compile(r"([A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
# paramchar = param-unreserved / unreserved / escaped ; param-unreserved = [ ] / : & + $
PARAMCHARS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
# hname / hvalue = *( hnv-unreserved / unreserved / escaped ); hnv-unreserved = [ ] / ? : + $
HCHARS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*")

UriParams = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``scheme`` is lower-case; other parts as written."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: UriParams = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP/SIPS URI; raise :class:`SipParseError` (400 or 416) otherwise."""
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise SipParseError(416, f"Unsupported URI scheme {uri.scheme}")
        return uri

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        for k, v in self.params:
            out += [";", k] if v is None else [";", k, "=", v]
        if self.headers:
            out += ["?", "&".join(f"{k}={v}" for k, v in self.headers)]
        return "".join(out)

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive); ``""`` when valueless."""
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return "" if v is None else v
        return None

    def with_param(self, name: str, value: str | None) -> SipUri:
        """Return a copy with parameter ``name`` set (``None`` value: flag parameter)."""
        lname = name.lower()
        kept = tuple((k, v) for k, v in self.params if k.lower() != lname)
        return replace(self, params=(*kept, (name, value)))

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (RFC 3261 19.1.1)."""
        t = self.param("transport")
        return t.lower() if t else None

    @property
    def wire_transport(self) -> str:
        """The transport a request to this URI leaves on (RFC 3261 18.1.1, 26.2.2; RFC 3263
        4.1 without NAPTR/SRV): "TLS" for ``sips:`` or ``;transport=tls``, else the
        ``transport`` parameter upper-cased, "UDP" when there is none."""
        t = self.transport
        if self.scheme == "sips" or t == "tls":
            return "TLS"
        return t.upper() if t else "UDP"

    @property
    def default_port(self) -> int:
        """5061 for TLS, 5060 otherwise (RFC 3261 19.1.2)."""
        return 5061 if self.wire_transport == "TLS" else 5060

    @property
    def lr(self) -> bool:
        """Whether the URI carries the loose-routing ``lr`` flag (RFC 3261 16.12)."""
        return self.param("lr") is not None

    def key(self) -> tuple[object, ...]:
        """A comparison key following RFC 3261 19.1.4 (user case-sensitive, host not)."""
        important = ("transport", "user", "ttl", "method", "maddr")
        params = tuple(
            sorted(
                (k.lower(), pct_unquote(v or "").lower())
                for k, v in self.params
                if k.lower() in important
            )
        )
        user = pct_unquote(self.user) if self.user is not None else None
        return (self.scheme, user, self.password, self.host.lower(), self.port, params)


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of another scheme (``tel:``, ``http:``, ``isbn:``...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | AbsoluteUri


# text -> parsed URI. URIs are immutable and the same few recur in every message of a call
# (Request-URI, From, To, Contact), so each is parsed once. Bounded: emptied when full, so
# hostile traffic with endless new URIs costs a parse each, as without the cache.
_PARSED: Memo[Uri] = Memo()


def parse_uri(text: str) -> Uri:
    """Parse any absolute URI; SIP and SIPS URIs are decomposed (RFC 3261 19.1.1)."""
    return _PARSED.parse(text, _parse_uri)


def _parse_uri(text: str) -> Uri:
    m = SCHEME_RE.match(text)
    if m is None:
        raise SipParseError(400, "Malformed URI")
    rest = text[m.end() :]
    if not rest or any(c in rest for c in ' \t\r\n<>"'):
        raise SipParseError(400, "Malformed URI")
    scheme = m.group(1).lower()
    if scheme not in ("sip", "sips"):
        return AbsoluteUri(m.group(1), rest)
    return _parse_sip(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user = password = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, _, pw = userinfo.partition(":")
        if not USER_RE.fullmatch(user) or not PASSWORD_RE.fullmatch(pw):
            raise SipParseError(400, "Malformed URI userinfo")
        password = pw if _ else None
    rest, q, htext = rest.partition("?")
    hostport, *ptexts = rest.split(";")
    hm = HOSTPORT_RE.fullmatch(hostport)
    if hm is None:
        raise SipParseError(400, "Malformed URI host")
    port = int(hm.group(2)) if hm.group(2) is not None else None
    if port is not None and port > 65535:
        raise SipParseError(400, "Malformed URI port")
    return SipUri(
        scheme,
        hm.group(1),
        user,
        password,
        port,
        _uri_params(ptexts),
        _uri_headers(htext) if q else (),
    )


def _uri_params(texts: list[str]) -> UriParams:
    out: list[tuple[str, str | None]] = []
    for p in texts:
        name, eq, value = p.partition("=")
        if not PARAMCHARS_RE.fullmatch(name) or (eq and not PARAMCHARS_RE.fullmatch(value)):
            raise SipParseError(400, "Malformed URI parameter")
        out.append((name, value if eq else None))
    return tuple(out)


def _uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for h in text.split("&"):
        name, eq, value = h.partition("=")
        if not name or not eq or not HCHARS_RE.fullmatch(name) or not HCHARS_RE.fullmatch(value):
            raise SipParseError(400, "Malformed URI header")
        out.append((name, value))
    return tuple(out)
