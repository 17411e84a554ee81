"""SIP messages <-> sessiond events and commands. Sans-I/O.

Inbound: a request or response becomes an :class:`~sessiond.engine.Event` whose plain data
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
from dataclasses import dataclass, replace
from typing import Any

from sessiond.engine import Event
from sessiond.sip.address import NameAddr
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.uri import SipUri, parse_uri

REQUEST_EVENTS = {"ACK": "Ack", "BYE": "Bye", "CANCEL": "Cancel"}
TXN_HEADERS = ("via", "from", "to", "call-id", "cseq")
MAX_FORWARDS = "70"
USER_AGENT = "sessiond"


@dataclass(frozen=True, slots=True)
class Local:
    """How this edge names itself in Via and Contact."""

    host: str
    port: int
    transport: str = "UDP"
    name: str = "edge"

    def via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {_hostport(self.host, self.port)};branch={branch};rport"

    def contact(self) -> str:
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
    return str(replace(addr, params=tuple(p for p in addr.params if p[0].lower() != "tag")))


def _sdp(msg: SipRequest | SipResponse) -> str:
    ctype = (msg.content_type or "").lower()
    return msg.body.decode("utf-8", "replace") if msg.body and "application/sdp" in ctype else ""


def txn_text(req: SipRequest, transport: str, source: tuple[str, int]) -> str:
    lines = [f"{transport} {source[0]} {source[1]}"]
    for key, name, value, _ in req.headers.fields:
        if key in TXN_HEADERS:
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def parse_txn(text: str) -> tuple[str, tuple[str, int], SipRequest]:
    """(transport, source, a request carrying the headers a response must copy)."""
    first, *lines = text.split("\n")
    transport, host, port = first.split(" ")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    cseq = next(v for k, v in headers if k.lower() in ("cseq",))
    method = cseq.split()[-1]
    req = SipRequest.create(method, "sip:sessiond", headers)  # type: ignore[arg-type]
    return transport, (host, int(port)), req


def request_event(
    req: SipRequest, transport: str, source: tuple[str, int], edge: str
) -> Event | None:
    """The event for a request that starts or continues a session (None: not ours)."""
    to_tag = req.to_tag or ""
    if req.method == "INVITE":
        kind = "ReInvite" if to_tag else "Invite"
    else:
        kind = REQUEST_EVENTS.get(req.method, "")
    if not kind or req.call_id is None or req.cseq is None:
        return None
    contacts = req.contacts()
    data: dict[str, Any] = {
        "kind": "request",
        "method": req.method,
        "call_id": req.call_id,
        "from_tag": req.from_tag or "",
        "to_tag": to_tag,
        "from": _untagged(req.from_addr),
        "to": _untagged(req.to_addr),
        "contact": str(contacts[0].uri) if contacts else "",
        "cseq": req.cseq.seq,
        "record_route": ",".join(req.header_values("record-route")),
        "sdp": _sdp(req),
        "txn": txn_text(req, transport, source),
        "edge": edge,
        "source": f"{source[0]}:{source[1]}",
    }
    eid = f"sip:{req.call_id}:{req.branch or ''}:{req.method}:{req.cseq.seq}"
    return Event(eid, kind, data)


def response_event(resp: SipResponse, edge: str) -> Event | None:
    """The event for a response to one of our requests (None: nothing to tell)."""
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
    else:
        return None
    contacts = resp.contacts()
    rr = resp.header_values("record-route")
    data: dict[str, Any] = {
        "kind": "response",
        "method": method,
        "code": resp.status,
        "reason": resp.reason,
        "call_id": resp.call_id,
        "from_tag": resp.from_tag or "",
        "to_tag": resp.to_tag or "",
        "contact": str(contacts[0].uri) if contacts else "",
        "route_set": ",".join(reversed(rr)),  # UAC route set: Record-Route reversed (12.1.2)
        "sdp": _sdp(resp),
        "cseq": resp.cseq.seq,
        "edge": edge,
    }
    if resp.status in (401, 407):  # the challenge, for a retry with credentials (22.2, 22.3)
        name = "www_authenticate" if resp.status == 401 else "proxy_authenticate"
        data[name] = resp.headers.get_all(name.replace("_", "-"))
    eid = (
        f"sip:{resp.call_id}:{resp.branch or ''}:{method}:{resp.cseq.seq}:"
        f"{resp.status}:{resp.to_tag or ''}"
    )
    return Event(eid, kind, data)


def timeout_event(call_id: str, local_tag: str, method: str, cseq: int, edge: str) -> Event:
    data = {
        "kind": "response",
        "method": method,
        "code": 408,
        "reason": "Request Timeout",
        "call_id": call_id,
        "from_tag": local_tag,
        "to_tag": "",
        "edge": edge,
    }
    return Event(f"sip:{call_id}:{local_tag}:{method}:{cseq}:timeout", "TransactionTimeout", data)


def build_response(
    cmd: Mapping[str, Any], local: Local, txn: tuple[str, tuple[str, int], SipRequest] | None = None
) -> tuple[str, tuple[str, int], SipResponse]:
    """A ``respond`` command -> (transport, destination, response)."""
    transport, source, req = txn or parse_txn(str(cmd["txn"]))
    extra: list[tuple[str, str]] = []
    code = int(cmd["code"])
    if req.method == "INVITE" and 101 <= code < 300:
        extra.append(("Contact", local.contact()))
    contacts = cmd.get("contacts")
    if 300 <= code < 400 and isinstance(contacts, list) and contacts:
        extra.append(("Contact", ", ".join(_name_addr(str(c)) for c in contacts)))
    body = str(cmd.get("sdp") or "").encode()
    if body:
        extra.append(("Content-Type", "application/sdp"))
    extra.append(("Server", USER_AGENT))
    resp = make_response(
        req,
        code,
        cmd.get("reason"),
        to_tag=str(cmd.get("local_tag") or "") or None,
        headers=extra,
        body=body,
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


def _name_addr(text: str) -> str:
    """An addr-spec in From/To must be wrapped in <> before header parameters are added."""
    return text if "<" in text else f"<{text}>"


def _dialog_headers(
    cmd: Mapping[str, Any], method: str, cseq: int, local: Local, branch: str
) -> list[tuple[str, str]]:
    to = _name_addr(str(cmd.get("remote_uri") or cmd.get("remote_target")))
    if cmd.get("remote_tag"):
        to = f"{to};tag={cmd['remote_tag']}"
    headers = [
        ("Via", local.via(branch)),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"{_name_addr(str(cmd['local_uri']))};tag={cmd['local_tag']}"),
        ("To", to),
        ("Call-ID", str(cmd["call_id"])),
        ("CSeq", f"{cseq} {method}"),
    ]
    for route in filter(None, str(cmd.get("route_set") or "").split(",")):
        headers.append(("Route", route))
    return headers


def build_request(cmd: Mapping[str, Any], method: str, local: Local) -> SipRequest:
    """``invite``/``ack``/``bye``/``cancel`` commands -> a request (RFC 3261 8.1.1, 12.2.1.1,
    9.1 for CANCEL, 13.2.2.4 for the ACK of a 2xx)."""
    cseq = int(cmd["cseq"])
    call_id, local_tag = str(cmd["call_id"]), str(cmd["local_tag"])
    target = str(cmd.get("remote_target") or cmd.get("remote_uri"))
    if method == "CANCEL":  # same Request-URI, Call-ID, From, To, CSeq number and branch
        branch = branch_for(call_id, local_tag, cseq, "INVITE")
        cancel = {**cmd, "remote_tag": "", "route_set": cmd.get("route_set", "")}
        headers = _dialog_headers(cancel, "CANCEL", cseq, local, branch)
        return SipRequest.create("CANCEL", target, headers)
    branch = branch_for(call_id, local_tag, cseq, method)
    headers = _dialog_headers(cmd, method, cseq, local, branch)
    body = b""
    if method in ("INVITE",):
        headers.append(("Contact", local.contact()))
        headers.append(("User-Agent", USER_AGENT))
        if cmd.get("sdp"):
            body = str(cmd["sdp"]).encode()
            headers.append(("Content-Type", "application/sdp"))
    return SipRequest.create(method, target, headers, body)


def request_destination(req: SipRequest, default_port: int = 5060) -> tuple[str, str, int]:
    """(transport, host, port) for a request: the first Route if any (loose routing),
    else the Request-URI. Host names are left for the transport to resolve."""
    routes = req.header_values("route")
    uri_text = NameAddr.parse(routes[0], "Route").uri if routes else req.uri
    uri = parse_uri(str(uri_text))
    if not isinstance(uri, SipUri):
        raise ValueError(f"cannot send to {uri_text}")
    transport = (uri.transport or "udp").upper()
    return transport, uri.host, uri.port or default_port
