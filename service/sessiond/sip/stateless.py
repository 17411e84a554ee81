"""Stateless answers to requests that failed parsing or validation (RFC 3261 8.2, 16.3).

The edge calls :func:`error_response` with the bytes it received and the
:class:`SipParseError`; it gets the response bytes to send back, or ``None`` when no
response may or can be sent (the message was a response or an ACK, or the fields a
response is sent to -- the Via -- cannot be recovered). A request too broken to parse
gets its Via, From, To, Call-ID and CSeq lines copied textually, as far as present.
"""

from __future__ import annotations

import secrets

from sessiond.sip.errors import SipParseError
from sessiond.sip.headers import HeaderField, canonical_key
from sessiond.sip.message import SipRequest, make_response, parse_message
from sessiond.sip.wire import decode_head

COPIED = ("via", "from", "to", "call-id", "cseq")


def error_response(data: bytes, error: SipParseError, to_tag: str | None = None) -> bytes | None:
    """Build the response for ``error`` to the request in ``data``, if one can be sent."""
    tag = to_tag or secrets.token_hex(6)
    try:
        msg = parse_message(data)
    except SipParseError:
        return _raw_response(data, error, tag)
    if not isinstance(msg, SipRequest) or msg.method == "ACK":
        return None
    if None in (msg.from_addr, msg.to_addr, msg.cseq, msg.call_id) or not msg.vias:
        return _raw_response(data, error, tag)
    return bytes(make_response(msg, error.status, error.reason, to_tag=tag, headers=error.headers))


def _raw_response(data: bytes, error: SipParseError, tag: str) -> bytes | None:
    """Copy the needed lines textually from a message too broken to parse."""
    head = decode_head(data.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0])
    lines = head.split("\r\n")
    start = lines[0]
    if start.upper().startswith("SIP/") or start.split(" ", 1)[0] == "ACK":
        return None
    fields = _tolerant_fields(lines[1:])
    if not any(f[0] == "via" for f in fields):
        return None  # nowhere to send it (18.2.2)
    out = [f"SIP/2.0 {error.status} {error.reason}"]
    for key, name, value, _ in fields:
        if key == "to" and ";tag=" not in value.replace(" ", "").lower():
            value += f";tag={tag}"
        out.append(f"{name}: {value}")
    out += [f"{n}: {v}" for n, v in error.headers]
    out += ["Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("utf-8", "surrogateescape")


def _tolerant_fields(lines: list[str]) -> list[HeaderField]:
    fields: list[HeaderField] = []
    continuing = False
    for line in lines:
        if "\r" in line or "\n" in line:
            continuing = False
        elif line[:1] in (" ", "\t"):
            if continuing:
                key, name, value, raw = fields[-1]
                fields[-1] = (key, name, value + " " + line.strip(), raw)
        else:
            name, colon, value = line.partition(":")
            key = canonical_key(name.strip())
            continuing = bool(colon) and key in COPIED
            if continuing:
                fields.append((key, name.strip(), value.strip(), line))
    return fields
