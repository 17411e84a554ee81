"""SIP messages <-> sessiond events and commands. Sans-I/O.

Inbound: a request or response becomes an :class:`~sessiond.table.engine.Event` whose plain data
fields the worker routes on (``kind``, ``call_id``, ``from_tag``, ``to_tag``) and the tables
save (``sdp``, ``contact``, ``record_route``, ``txn``...). Event ids are deterministic
(Call-ID, branch, method, CSeq, and for responses the code and To tag), so a retransmission
that reaches the streams is refused by the worker as a duplicate, which re-emits the
commands it caused.

``txn`` is the text the edge needs to answer a request without any state of its own (after
a restart): transport and source address, then the request's Via, From, To, Call-ID and CSeq
header lines, ``\\n``-separated. It is readable in ``redis-cli HGETALL``.

Outbound: a command (from a state table action) becomes a request or response. Branches
are derived from (Call-ID, local tag, CSeq, method), so a command executed twice produces a
retransmission at the far end, never a second transaction, and CANCEL finds its INVITE's
branch without state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sessiond.core.messages import (
    RequestEvent,
    Respond,
    ResponseEvent,
    SendInvite,
    SendRequest,
    TransactionTimeout,
)
from sessiond.core.types import Event
from sessiond.edge.nat import reachable_contact
from sessiond.media.hold import holds
from sessiond.sip.address import NameAddr
from sessiond.sip.errors import SipError, SipParseError
from sessiond.sip.headers import display_name
from sessiond.sip.memo import Memo
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.registrar import canonical_aor
from sessiond.sip.uri import SipUri, parse_uri

REQUEST_EVENTS = {
    "ACK": "Ack",
    "BYE": "Bye",
    "CANCEL": "Cancel",
    "UPDATE": "Update",  # RFC 3311
    "REFER": "Refer",  # RFC 3515
    "NOTIFY": "Notify",  # RFC 6665 (the refer event package)
    "INFO": "Info",  # RFC 6086
    "PRACK": "Prack",  # RFC 3262
}
# Responses to our in-dialog requests other than INVITE and BYE: final ones become
# "<Method>Response" events (ReferResponse, NotifyResponse...) carrying the code. (We send
# no UPDATE: our refreshes and re-offers are re-INVITEs, which every peer supports.)
RESPONSE_EVENTS = {
    "REFER": "ReferResponse",
    "NOTIFY": "NotifyResponse",
    "INFO": "InfoResponse",
    "PRACK": "PrackResponse",
}
# Header values a request event carries when present (event field <- header name).
REQUEST_HEADERS = (
    ("refer_to", "refer-to"),
    ("referred_by", "referred-by"),
    ("replaces", "replaces"),
    ("session_expires", "session-expires"),
    ("min_se", "min-se"),
    ("supported", "supported"),
    ("require", "require"),
    ("event_package", "event"),
    ("subscription_state", "subscription-state"),
    ("rseq", "rseq"),
    ("rack", "rack"),
)
# Header values a response event carries when present.
RESPONSE_HEADERS = (
    ("session_expires", "session-expires"),
    ("min_se", "min-se"),
    ("require", "require"),
    ("supported", "supported"),
    ("rseq", "rseq"),
    ("retry_after", "retry-after"),
)
# Methods whose requests and 2xx responses carry our Contact (target refresh, RFC 3261 12,
# RFC 3311 5.1, RFC 3515 2.4.1, RFC 6665 4.1.1).
CONTACT_METHODS = frozenset({"INVITE", "UPDATE", "REFER", "NOTIFY", "SUBSCRIBE"})
# The methods this edge and the state tables really handle: INVITE (Invite/ReInvite), OPTIONS
# (answered by the edge) and those that become events. Every Allow header we send (OPTIONS
# answers, 405 and 501, our INVITEs, responses the tables send) is this one list; any other
# method is answered 405 or 501 (RFC 3261 8.2.1).
_BASE_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")
HANDLED_METHODS = _BASE_METHODS + tuple(m for m in REQUEST_EVENTS if m not in _BASE_METHODS)
ALLOWED = ", ".join(HANDLED_METHODS)
# Option tags we implement (RFC 4028 session timers, RFC 3262 reliable provisionals, RFC
# 3891 Replaces): a
# request that requires another one gets 420 (RFC 3261 8.2.2.3).
SUPPORTED = ("timer", "100rel", "replaces")
TXN_HEADERS = ("via", "from", "to", "call-id", "cseq", "record-route")
MAX_FORWARDS = "70"
# Header fields whose values become event fields, stream ids or Redis keys: they must be
# UTF-8 (RFC 3261 7.3.1), or the event cannot be encoded. The parser keeps other bytes as
# surrogates (so a message round-trips); a message with one in these fields is refused.
MAPPED_HEADERS = frozenset(
    {
        *TXN_HEADERS,
        "contact",
        "content-type",
        "www-authenticate",
        "proxy-authenticate",
        *(header for _, header in REQUEST_HEADERS),
        *(header for _, header in RESPONSE_HEADERS),
    }
)
USER_AGENT = "sessiond"


def check_utf8(msg: SipRequest | SipResponse) -> None:
    """Raise 400 "Bad Request - invalid UTF-8 in <header>" when a field the edge maps into an
    event (or a response's reason phrase) holds bytes that are not UTF-8. Bodies are not
    checked: they are decoded with U+FFFD for what is not UTF-8 (see :func:`_sdp`)."""
    for key, _, value, _ in msg.headers.fields:
        if key in MAPPED_HEADERS and not value.isascii() and _undecodable(value):
            raise SipParseError(400, f"invalid UTF-8 in {display_name(key)}")
    if isinstance(msg, SipResponse) and not msg.reason.isascii() and _undecodable(msg.reason):
        raise SipParseError(400, "invalid UTF-8 in Reason-Phrase")


def _undecodable(text: str) -> bool:
    """True when ``text`` holds a byte the UTF-8 decoding could not take (a lone surrogate,
    as ``surrogateescape`` leaves it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class Local:
    """How this edge names itself in Via and Contact."""

    host: str
    port: int
    transport: str = "UDP"
    name: str = "edge"

    def via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {_hostport(self.host, self.port)};branch={branch};rport"

    def contact(self, scheme: str = "sip") -> str:
        """Our Contact; a SIPS one (no transport parameter: TLS is implied) answers or
        sends a request whose Request-URI is SIPS (RFC 3261 8.1.1.8, 12.1.1)."""
        if scheme == "sips" and self.transport == "TLS":
            return f"<sips:sessiond@{_hostport(self.host, self.port)}>"
        suffix = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"<sip:sessiond@{_hostport(self.host, self.port)}{suffix}>"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def branch_for(call_id: str, local_tag: str, cseq: int, method: str) -> str:
    digest = hashlib.blake2b(f"{call_id}|{local_tag}|{cseq}|{method}".encode(), digest_size=10)
    return "z9hG4bK" + digest.hexdigest()


def _untagged(addr: NameAddr | None) -> str:
    if addr is None:
        return ""
    if not addr.params:
        return str(addr)
    params = tuple(p for p in addr.params if p[0].lower() != "tag")
    return str(NameAddr(addr.uri, addr.display_name, params))


def _sdp(msg: SipRequest | SipResponse) -> str:
    ctype = (msg.content_type or "").lower()
    return msg.body.decode("utf-8", "replace") if msg.body and "application/sdp" in ctype else ""


_WANTED_REQUEST = {header: field for field, header in REQUEST_HEADERS}
_WANTED_RESPONSE = {header: field for field, header in RESPONSE_HEADERS}


def _headers(msg: SipRequest | SipResponse, wanted: Mapping[str, str]) -> dict[str, str]:
    """The wanted headers' values (repeated ones joined with ", "), in one pass over the
    message's fields: this runs for every message the edge receives."""
    out: dict[str, str] = {}
    for key, _, value, _ in msg.headers.fields:
        field = wanted.get(key)
        if field is not None:
            out[field] = f"{out[field]}, {value}" if field in out else value
    return out


def refer_target(value: str) -> dict[str, str]:
    """Refer-To (RFC 3515 2.1) -> ``target`` (the URI without its headers) and, for an
    attended transfer, ``replaces`` (the Replaces header value it embeds, RFC 3891)."""
    try:
        uri = str(NameAddr.parse(value, "Refer-To").uri)
    except SipError:
        return {"target": ""}
    target, _, query = uri.partition("?")
    out = {"target": target}
    for item in query.split("&"):
        name, _, val = item.partition("=")
        if name.lower() == "replaces" and val:
            out["replaces"] = unquote(val)
    return out


def sipfrag_code(body: str) -> int:
    """The status code of a message/sipfrag body (``SIP/2.0 200 OK``); 0 if none."""
    parts = body.lstrip().split(" ", 2)
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        code = int(parts[1])
        return code if 100 <= code <= 699 else 0
    return 0


def dtmf_digit(content_type: str, body: str) -> str:
    """The digit of a SIP INFO DTMF body: ``application/dtmf-relay`` (``Signal=5``) or
    ``application/dtmf`` (the digit alone); "" when there is none."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/dtmf-relay":
        for line in body.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                body = value
                break
        else:
            return ""
    elif ctype != "application/dtmf":
        return ""
    digit = body.strip().upper()
    if digit in ("10", "11"):  # some phones send the event code for * and #
        digit = "*" if digit == "10" else "#"
    return digit if len(digit) == 1 and digit in "0123456789*#ABCD" else ""


def txn_text(req: SipRequest, transport: str, source: tuple[str, int]) -> str:
    lines = [f"{transport} {source[0]} {source[1]}"]
    for key, name, value, _ in req.headers.fields:
        if key in TXN_HEADERS:
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


Txn = tuple[str, tuple[str, int], SipRequest]
# txn text -> parsed: an INVITE's txn answers its 180 and its 200. Bounded: emptied when full.
_TXNS: Memo[Txn] = Memo(1024, 2048)


def parse_txn(text: str) -> Txn:
    """(transport, source, a request carrying the headers a response must copy)."""
    txn = _TXNS.get(text)
    if txn is None:
        txn = _TXNS.put(text, _parse_txn(text))  # errors raise: never kept
    return txn


def _parse_txn(text: str) -> Txn:
    first, *lines = text.split("\n")
    transport, host, port = first.split(" ")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    cseq = next(v for k, v in headers if k.lower() in ("cseq",))
    method = cseq.split()[-1]
    req = SipRequest.create(method, "sip:sessiond", headers)  # type: ignore[arg-type]
    return transport, (host, int(port)), req


def request_event(
    req: SipRequest,
    transport: str,
    source: tuple[str, int],
    edge: str,
    *,
    served: frozenset[str] = frozenset(),
) -> Event | None:
    """The event for a request that starts or continues a session (None: not ours). An
    initial INVITE whose Request-URI is a user of a ``served`` domain (``--registrar``)
    carries that AOR (``aor``, ``user@domain``): the worker looks its bindings up."""
    to_tag = req.to_tag or ""
    if req.method == "INVITE":
        kind = "ReInvite" if to_tag else "Invite"
    else:
        kind = REQUEST_EVENTS.get(req.method, "")
    if not kind or req.call_id is None or req.cseq is None:
        return None
    contacts = req.contacts()
    sdp = _sdp(req)
    extra: dict[str, Any] = {} if kind == "Ack" else _headers(req, _WANTED_REQUEST)
    if "refer_to" in extra:
        extra.update(refer_target(extra["refer_to"]))
    if sdp:
        extra["held"] = holds(sdp)
    if kind == "Invite" and served:
        aor = _served_aor(req.uri, served)
        if aor:
            extra["aor"] = aor
    ctype = req.content_type or ""
    if req.body and "application/sdp" not in ctype.lower():
        extra["content_type"] = ctype
        extra["body"] = body = req.body.decode("utf-8", "replace")
        if kind == "Info":
            digit = dtmf_digit(ctype, body)
            if digit:
                extra["digit"] = digit
        elif kind == "Notify" and "message/sipfrag" in ctype.lower():
            code = sipfrag_code(body)
            if code:
                extra["code"] = code
    record = RequestEvent(
        kind="request",
        method=req.method,
        call_id=req.call_id,
        from_tag=req.from_tag or "",
        to_tag=to_tag,
        from_=_untagged(req.from_addr),
        to=_untagged(req.to_addr),
        contact=reachable_contact(contacts[0].uri, source, direct=_direct(req)) if contacts else "",
        cseq=req.cseq.seq,
        record_route=",".join(req.header_values("record-route")),
        sdp=sdp,
        txn=txn_text(req, transport, source),
        edge=edge,
        source=f"{source[0]}:{source[1]}",
        **extra,
    )
    eid = f"sip:{req.call_id}:{req.branch or ''}:{req.method}:{req.cseq.seq}"
    return Event(eid, kind, record.data(last=extra))


def _served_aor(uri: object, served: frozenset[str]) -> str:
    """``user@domain`` of a Request-URI in a served domain, else empty."""
    try:
        aor = canonical_aor(str(uri))
    except SipError:
        return ""
    return f"{aor.user}@{aor.host}" if aor.user and aor.host in served else ""


def _direct(msg: SipRequest | SipResponse) -> bool:
    """No proxy between us and the peer: one Via (a request's), no Record-Route."""
    return not msg.header_values("record-route") and (
        isinstance(msg, SipResponse) or len(msg.vias) == 1
    )


def response_event(
    resp: SipResponse, edge: str, source: tuple[str, int] | None = None
) -> Event | None:
    """The event for a response to one of our requests (None: nothing to tell); ``source``
    (where it came from) replaces a private Contact behind NAT (:mod:`sessiond.edge.nat`)."""
    method = resp.method
    if resp.call_id is None or resp.cseq is None or resp.status == 100:
        return None
    if method == "INVITE":
        kind = (
            "Provisional"
            if resp.status < 200
            else "Answered"
            if resp.status < 300
            else ("Rejected")
        )
    elif method == "BYE" and resp.is_final:
        kind = "ByeDone"
    elif method in RESPONSE_EVENTS and resp.is_final:
        kind = RESPONSE_EVENTS[method]
    else:
        return None
    try:
        contacts = resp.contacts()
    except SipError:  # responses are not validated: a final one still ends its request
        contacts = []
    rr = resp.header_values("record-route")
    extra: dict[str, Any] = _headers(resp, _WANTED_RESPONSE)
    if resp.body and "message/sipfrag" in (resp.content_type or "").lower():
        extra["body"] = resp.body.decode("utf-8", "replace")
    if resp.status in (401, 407):  # the challenge, for a retry with credentials (22.2, 22.3)
        name = "www_authenticate" if resp.status == 401 else "proxy_authenticate"
        extra[name] = resp.headers.get_all(name.replace("_", "-"))
    record = ResponseEvent(
        kind="response",
        method=method,
        code=resp.status,
        reason=resp.reason,
        call_id=resp.call_id,
        from_tag=resp.from_tag or "",
        to_tag=resp.to_tag or "",
        contact=reachable_contact(contacts[0].uri, source, direct=_direct(resp))
        if contacts
        else "",
        route_set=",".join(reversed(rr)),  # UAC route set: Record-Route reversed (12.1.2)
        sdp=_sdp(resp),
        cseq=resp.cseq.seq,
        edge=edge,
        **extra,
    )
    eid = (
        f"sip:{resp.call_id}:{resp.branch or ''}:{method}:{resp.cseq.seq}:"
        f"{resp.status}:{resp.to_tag or ''}"
    )
    return Event(eid, kind, record.data(last=extra))


def timeout_event(call_id: str, local_tag: str, method: str, cseq: int, edge: str) -> Event:
    record = TransactionTimeout(method=method, call_id=call_id, from_tag=local_tag, edge=edge)
    eid = f"sip:{call_id}:{local_tag}:{method}:{cseq}:timeout"
    return Event(eid, "TransactionTimeout", record.data())


def build_response(
    cmd: Respond, local: Local, txn: Txn | None = None, *, allow: str = ALLOWED
) -> tuple[str, tuple[str, int], SipResponse]:
    """A ``respond`` command -> (transport, destination, response)."""
    transport, source, req = txn or parse_txn(cmd.txn)
    extra: list[tuple[str, str]] = []
    code = cmd.code
    if req.method in CONTACT_METHODS and 101 <= code < 300:
        extra.append(("Contact", local.contact(_scheme(req.uri))))
        if req.method == "INVITE" and not req.to_tag:  # it makes a dialog: RFC 3261 12.1.1
            extra.extend(("Record-Route", rr) for rr in req.header_values("record-route"))
    if code in (405, 501) or req.method == "OPTIONS" and code < 300:
        extra.append(("Allow", allow))
    for name, value in cmd.headers or ():
        extra.append((name, value))
    if 300 <= code < 400 and cmd.contacts:
        extra.append(("Contact", ", ".join(_name_addr(c) for c in cmd.contacts)))
    body = (cmd.sdp or "").encode()
    if body:
        extra.append(("Content-Type", "application/sdp"))
    extra.append(("Server", USER_AGENT))
    resp = make_response(
        req, code, cmd.reason, to_tag=cmd.local_tag or None, headers=extra, body=body
    )
    return transport, response_destination(req, transport, source), resp


def response_destination(
    req: SipRequest, transport: str, source: tuple[str, int]
) -> tuple[str, int]:
    """RFC 3261 18.2.2 with RFC 3581 rport: back to where the request came from, unless the
    top Via names another port and did not ask for rport."""
    via = req.top_via
    if via is None or transport != "UDP":
        return source
    if via.wants_rport or via.received is not None:
        return source
    host, port = via.sent_by
    return source[0], port or 5060


def _scheme(uri: object) -> str:
    """ "sips" for a SIPS URI (as text or parsed), else "sip"."""
    return "sips" if str(uri)[:5].lower() == "sips:" else "sip"


def _name_addr(text: str) -> str:
    """An addr-spec in From/To must be wrapped in <> before header parameters are added."""
    return text if "<" in text else f"<{text}>"


def _dialog_headers(
    cmd: SendInvite | SendRequest,
    method: str,
    local: Local,
    branch: str,
    remote_tag: str,
    route_set: str,
) -> list[tuple[str, str]]:
    to = _name_addr(cmd.remote_uri or cmd.remote_target)
    if remote_tag:
        to = f"{to};tag={remote_tag}"
    headers = [
        ("Via", local.via(branch)),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"{_name_addr(cmd.local_uri)};tag={cmd.local_tag}"),
        ("To", to),
        ("Call-ID", cmd.call_id),
        ("CSeq", f"{cmd.cseq} {method}"),
    ]
    for route in filter(None, route_set.split(",")):
        headers.append(("Route", route))
    return headers


def build_request(
    cmd: SendInvite | SendRequest, method: str, local: Local, *, allow: str = ALLOWED
) -> SipRequest:
    """An edge command -> a request (RFC 3261 8.1.1, 12.2.1.1, 9.1 for CANCEL, 13.2.2.4 for
    the ACK of a 2xx). In-dialog requests (re-INVITE, UPDATE, REFER, NOTIFY, INFO, PRACK) take
    their body from ``sdp`` or ``body``/``content_type`` and extra ``headers`` [[name, value]]."""
    cseq, call_id, local_tag = cmd.cseq, cmd.call_id, cmd.local_tag
    target = cmd.remote_target or cmd.remote_uri
    if method == "CANCEL":  # same Request-URI, Call-ID, From, To, CSeq number and branch
        branch = branch_for(call_id, local_tag, cseq, "INVITE")
        headers = _dialog_headers(cmd, "CANCEL", local, branch, "", cmd.route_set)
        return SipRequest.create("CANCEL", target, headers)
    branch = branch_for(call_id, local_tag, cseq, method)
    headers = _dialog_headers(cmd, method, local, branch, cmd.remote_tag, cmd.route_set)
    body = b""
    if method in CONTACT_METHODS:
        headers.append(("Contact", local.contact(_scheme(target))))
    if method == "INVITE":
        headers.append(("Allow", allow))
        headers.append(("User-Agent", USER_AGENT))
    if method in ("INVITE", "UPDATE"):
        headers.append(("Supported", ", ".join(SUPPORTED)))
    for name, value in cmd.headers or ():
        headers.append((name, value))
    if cmd.sdp:
        body = cmd.sdp.encode()
        headers.append(("Content-Type", "application/sdp"))
    elif isinstance(cmd, SendRequest) and cmd.body:
        body = cmd.body.encode()
        headers.append(("Content-Type", cmd.content_type or "text/plain"))
    return SipRequest.create(method, target, headers, body)


def request_destination(req: SipRequest) -> tuple[str, str, int]:
    """(transport, host, port) for a request: the first Route if any (loose routing),
    else the Request-URI; ``sips:`` or ``;transport=tls`` is TLS, to port 5061 by default.
    Host names are left for the transport to resolve (and, for TLS, to verify)."""
    routes = req.header_values("route")
    uri_text = NameAddr.parse(routes[0], "Route").uri if routes else req.uri
    uri = parse_uri(str(uri_text))
    if not isinstance(uri, SipUri):
        raise ValueError(f"cannot send to {uri_text}")
    return uri.wire_transport, uri.host.strip("[]"), uri.port or uri.default_port
