"""SIP requests and responses (RFC 3261 7, 8.2.6, 20) as immutable wire objects.

Theory of operation
-------------------
:func:`parse_message` splits the bytes (:mod:`sessiond.sip.wire`), validates the start
line, and eagerly parses only what every layer needs on every message: Via, From, To,
Call-ID and CSeq (transaction and dialog matching). Every other field stays a raw line,
parsed on demand by the accessors (:meth:`SipMessage.contacts`, ``max_forwards``...).
Serialization writes the raw lines back, so a parsed message round-trips byte for byte
(leading CRLFs and bytes after Content-Length excepted). Edits return new objects.

Semantic checks that need policy (mandatory headers, CSeq/method match, version, URI
scheme, Require) live in :mod:`sessiond.sip.validate`, not in the parser: a message
missing its Call-ID still parses, so that the edge can answer it with a precise 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NoReturn, Self

from sessiond.sip.address import NameAddr
from sessiond.sip.cseq import CSeq, parse_digits
from sessiond.sip.errors import SipParseError
from sessiond.sip.grammar import TOKEN, split_commas
from sessiond.sip.headers import HeaderField, Headers, make_field
from sessiond.sip.status import reason_phrase
from sessiond.sip.uri import SCHEME_RE, Uri, parse_uri
from sessiond.sip.via import Via
from sessiond.sip.wire import split_message

VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
METHOD_RE = re.compile(TOKEN)
KNOWN_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    "MESSAGE UPDATE".split()
)
EAGER = frozenset({"via", "from", "to", "call-id", "cseq"})
_Eager = tuple[tuple[Via, ...], NameAddr | None, NameAddr | None, str | None, CSeq | None]


@dataclass(slots=True, eq=False)
class SipMessage:
    """What requests and responses share: header fields, body and the eager fields.

    Treat instances as immutable: the dataclasses are not ``frozen`` only because frozen
    construction costs a third of the parse time; every edit method returns a copy.
    """

    headers: Headers
    body: bytes
    vias: tuple[Via, ...]
    from_addr: NameAddr | None
    to_addr: NameAddr | None
    call_id: str | None
    cseq: CSeq | None
    version: str

    @classmethod
    def parse(cls, data: bytes, *, stream: bool = False) -> Self:
        """Parse bytes that must hold a message of this class ("Expected a request" else)."""
        msg = parse_message(data, stream=stream)
        if not isinstance(msg, cls):
            raise SipParseError(400, f"Expected a {cls.__name__.removeprefix('Sip').lower()}")
        return msg

    def start_line(self) -> str:
        """The Request-Line or Status-Line, without CRLF."""
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        head = self.headers.raw_text()
        text = f"{self.start_line()}\r\n{head}\r\n\r\n" if head else f"{self.start_line()}\r\n\r\n"
        return text.encode("utf-8", "surrogateescape") + self.body

    # -- accessors -------------------------------------------------------------------
    @property
    def top_via(self) -> Via | None:
        """The first Via value (the sender of a request, us for a response)."""
        return self.vias[0] if self.vias else None

    @property
    def branch(self) -> str | None:
        """Branch parameter of the top Via."""
        return self.vias[0].branch if self.vias else None

    @property
    def from_tag(self) -> str | None:
        """Tag of the From header field."""
        return self.from_addr.tag if self.from_addr else None

    @property
    def to_tag(self) -> str | None:
        """Tag of the To header field."""
        return self.to_addr.tag if self.to_addr else None

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (compact or long form, any case)."""
        return self.headers.get(name)

    def header_values(self, name: str) -> list[str]:
        """All elements of header ``name`` (comma lists split, see :meth:`Headers.values`)."""
        return self.headers.values(name)

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards value (0-255, RFC 3261 20.22), ``None`` when absent."""
        value = self.headers.get("max-forwards")
        return None if value is None else parse_digits(value, "Max-Forwards", 255)

    @property
    def content_type(self) -> str | None:
        """Media type of the body, lower-cased and without parameters."""
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def addresses(self, name: str) -> list[NameAddr]:
        """Parse every element of an address list header (Contact, Route, Record-Route)."""
        return [NameAddr.parse(v, name) for v in self.headers.values(name)]

    def contacts(self) -> list[NameAddr]:
        """The Contact addresses (``*`` is not an address; check ``header('Contact')``)."""
        return [NameAddr.parse(v, "Contact") for v in self.headers.values("contact") if v != "*"]

    def option_tags(self, name: str) -> list[str]:
        """Option tags of Require / Proxy-Require / Supported / Unsupported."""
        return [v for v in self.headers.values(name) if v]

    # -- edits -----------------------------------------------------------------------
    def with_headers(self, headers: Headers) -> Self:
        """Return a copy with a new header collection (eager fields recomputed)."""
        vias, frm, to, call_id, cseq = eager_fields(headers.fields)
        return replace(
            self, headers=headers, vias=vias, from_addr=frm, to_addr=to, call_id=call_id, cseq=cseq
        )

    def with_header(self, name: str, value: str | list[str]) -> Self:
        """Return a copy where header ``name`` has exactly ``value`` (list: several lines)."""
        return self.with_headers(self.headers.replace(name, value))

    def add_header(self, name: str, value: str, *, first: bool = False) -> Self:
        """Return a copy with one more header line (appended, or first: e.g. a new Via)."""
        return self.with_headers(self.headers.add(name, value, first=first))

    def without_header(self, name: str) -> Self:
        """Return a copy without header ``name``."""
        return self.with_headers(self.headers.remove(name))

    def with_body(self, body: bytes, content_type: str | None = None) -> Self:
        """Return a copy with ``body`` and a matching Content-Length (and Content-Type)."""
        headers = self.headers.replace("Content-Length", str(len(body)))
        if content_type is not None:
            headers = headers.replace("Content-Type", content_type)
        elif not body:
            headers = headers.remove("content-type")
        return replace(self.with_headers(headers), body=body)


@dataclass(slots=True, eq=False)
class SipRequest(SipMessage):
    """A request. ``uri`` is the Request-URI as written; see :meth:`request_uri`."""

    method: str = ""
    uri: str = ""

    @classmethod
    def create(
        cls,
        method: str,
        uri: str,
        headers: Iterable[tuple[str, str]] | Headers,
        body: bytes = b"",
    ) -> SipRequest:
        """Build a request; Content-Length is set from ``body``."""
        hdrs = headers if isinstance(headers, Headers) else Headers.of(headers)
        length = str(len(body))
        if "content-length" in hdrs:
            hdrs = hdrs.replace("Content-Length", length)
        else:  # what replace does then, without copying the fields twice
            hdrs = Headers((*hdrs.fields, make_field("Content-Length", length)))
        return SipRequest(hdrs, body, *eager_fields(hdrs.fields), "SIP/2.0", method, uri)

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP-Version``."""
        return f"{self.method} {self.uri} {self.version}"

    def with_source(self, host: str, port: int | None = None) -> SipRequest:
        """Stamp the top Via as the receiving transport must (18.2.1, RFC 3581).

        Adds ``received`` when ``host`` differs from the sent-by host, and fills ``rport``
        when the client asked for it. Responses built afterwards copy the stamped Via.
        """
        if not self.vias:
            return self
        top = self.vias[0].with_received(host, port)
        if top == self.vias[0]:
            return self
        return self.with_headers(self.headers.replace_first_value("via", str(top)))

    def request_uri(self) -> Uri:
        """Parse the Request-URI (RFC 3261 19.1)."""
        return parse_uri(self.uri)


@dataclass(slots=True, eq=False)
class SipResponse(SipMessage):
    """A response."""

    status: int = 0
    reason: str = ""

    def start_line(self) -> str:
        """``SIP-Version SP Status-Code SP Reason-Phrase``."""
        return f"{self.version} {self.status} {self.reason}"

    @property
    def method(self) -> str | None:
        """The method of the request this answers (from CSeq)."""
        return self.cseq.method if self.cseq else None

    @property
    def is_final(self) -> bool:
        """True for 2xx-6xx."""
        return self.status >= 200


def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse:
    """Parse one complete message; raise :class:`SipParseError`, never anything else.

    ``stream`` selects RFC 3261 18.3 stream rules (Content-Length mandatory).
    """
    start, text, fields, body = split_message(data, stream=stream)
    eager = eager_fields(fields)
    headers = Headers(fields, text)
    if start[:4].upper() == "SIP/":
        version, status, reason = _status_line(start)
        return SipResponse(headers, body, *eager, version, status, reason)
    method, uri, version = _request_line(start)
    return SipRequest(headers, body, *eager, version, method, uri)


def _request_line(line: str) -> tuple[str, str, str]:
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(400, "Malformed Request-Line")
    method, uri, version = parts
    if method not in KNOWN_METHODS and METHOD_RE.fullmatch(method) is None:
        raise SipParseError(400, "Malformed method")
    if SCHEME_RE.match(uri) is None or "<" in uri or "\t" in uri:
        raise SipParseError(400, "Malformed Request-URI")
    if version != "SIP/2.0":
        if VERSION_RE.fullmatch(version) is None:
            raise SipParseError(400, "Malformed SIP-Version")
        version = version.upper()
    return method, uri, version


def _status_line(line: str) -> tuple[str, int, str]:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF ; Status-Code = 3DIGIT
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if VERSION_RE.fullmatch(version) is None:
        raise SipParseError(400, "Malformed SIP-Version")
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "100" <= code <= "699":
        raise SipParseError(400, "Malformed Status-Code")
    return version.upper(), int(code), reason


def eager_fields(fields: Iterable[HeaderField]) -> _Eager:
    """Parse Via, From, To, Call-ID and CSeq; single-valued ones must appear once."""
    vias: list[Via] = []
    frm = to = None
    call_id = None
    cseq = None
    for key, _, value, _ in fields:
        if key not in EAGER:
            continue
        if key == "via":
            if "," in value:
                vias.extend([Via.parse(v) for v in split_commas(value)])
            else:
                vias.append(Via.parse(value))
        elif key == "from":
            frm = NameAddr.parse(value, "From") if frm is None else _duplicate("From")
        elif key == "to":
            to = NameAddr.parse(value, "To") if to is None else _duplicate("To")
        elif key == "cseq":
            cseq = CSeq.parse(value) if cseq is None else _duplicate("CSeq")
        else:
            call_id = _call_id(value) if call_id is None else _duplicate("Call-ID")
    return (tuple(vias), frm, to, call_id, cseq)


def _duplicate(name: str) -> NoReturn:
    raise SipParseError(400, f"Multiple {name} headers")


def _call_id(value: str) -> str:
    # Call-ID = word [ "@" word ]: no whitespace inside.
    if not value or " " in value or "\t" in value:
        raise SipParseError(400, "Malformed Call-ID")
    return value


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 8.2.6.2).

    Via (all values, in order), From, Call-ID and CSeq are copied from the request; To is
    copied and gets ``to_tag`` unless it already carries a tag or ``status`` is 100.
    """
    fields = [f for f in request.headers.fields if f[0] in EAGER and f[0] != "to"]
    to = request.to_addr
    if to is not None:
        if to_tag is not None and to.tag is None and status != 100:
            tagged = str(to.with_tag(to_tag))
            fields.append(make_field("To", tagged))
            to = NameAddr.parse(tagged, "To")  # as parsing the response would give
        else:
            fields.append(make_field("To", request.headers.get("to") or str(to)))
    if status == 100 and (stamp := request.headers.get("timestamp")) is not None:
        fields.append(make_field("Timestamp", stamp))  # 8.2.6.1
    extra = [make_field(name, value) for name, value in headers]
    fields += extra
    length = str(len(body))
    if any(f[0] == "content-length" for f in extra):
        resp_headers = Headers(fields).replace("Content-Length", length)
    else:
        fields.append(make_field("Content-Length", length))
        resp_headers = Headers(fields)
    if any(f[0] in EAGER for f in extra):
        eager = eager_fields(resp_headers.fields)
    else:  # Via, From, To, Call-ID and CSeq lines as the request's: so are their values
        eager = (request.vias, request.from_addr, to, request.call_id, request.cseq)
    return SipResponse(
        resp_headers,
        body,
        *eager,
        "SIP/2.0",
        status,
        reason if reason is not None else reason_phrase(status),
    )
