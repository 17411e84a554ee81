"""Message framing on the wire: start line, header section, body (RFC 3261 7, 18.3).

::

    generic-message = start-line *message-header CRLF [ message-body ]
    message-header  = field-name HCOLON field-value CRLF   ; HCOLON = *( SP / HTAB ) ":" SWS

7.3.1: a header line starting with SP/HTAB continues the previous one (folding); the fold
is equivalent to one SP.  7.5: CRLFs before the start line are ignored.  18.3: on a stream
the body length is given by Content-Length (mandatory); on a datagram a body shorter than
Content-Length is an error and bytes after it are discarded; without Content-Length the
body runs to the end of the datagram.
"""

from __future__ import annotations

import re

from sessiond.sip.cseq import parse_digits
from sessiond.sip.errors import SipParseError
from sessiond.sip.headers import COMPACT_FORMS, HeaderField

# field-name = token; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*")
FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")
MAX_CONTENT_LENGTH = 2**31 - 1


def is_keepalive(data: bytes) -> bool:
    """True for a CRLF keep-alive datagram (RFC 5626 4.4.1): nothing but CR and LF."""
    return not data.strip(b"\r\n")


def decode_head(data: bytes) -> str:
    """Decode header bytes; UTF-8 as RFC 3261 says, other bytes survive a round trip."""
    return data.decode("utf-8", "surrogateescape")


def split_message(
    data: bytes, *, stream: bool = False
) -> tuple[str, str, list[HeaderField], bytes]:
    """Split a complete message into start line, header text, header fields and body."""
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if not data:
            raise SipParseError(400, "Empty message")
        if not data.endswith(b"\r\n"):
            raise SipParseError(400, "Missing empty line after header section")
        end = len(data) - 2  # header section ends the datagram (body-less, lenient)
    head = data[:end].decode("utf-8", "surrogateescape")  # as decode_head, inlined
    start, _, rest = head.partition("\r\n")
    lines = rest.split("\r\n") if rest else []
    # Every CR and LF must be part of a CRLF: one after the start line, one between lines.
    if head.count("\r") != len(lines) or head.count("\n") != len(lines):
        raise SipParseError(400, "Bare CR or LF in header section")
    fields = _fields(rest, lines) if rest else []
    body = _body(data, end + 4, fields, stream)
    return start, rest, fields, body


def parse_fields(text: str) -> list[HeaderField]:
    """Parse the header lines of a section (without the start line)."""
    return _fields(text, text.split("\r\n"))


def _fields(text: str, lines: list[str]) -> list[HeaderField]:
    if "\r\n " in text or "\r\n\t" in text or text[:1] in (" ", "\t"):
        return _parse_lines(_logical_lines(lines))
    # Fast path (no folding): names seen before map straight to their canonical key.
    out: list[HeaderField] = []
    append = out.append
    known = _NAME_KEYS.get
    for raw in lines:
        name, colon, value = raw.partition(":")
        key = known(name)
        if key is None or not colon:
            return _parse_lines(lines)
        append((key, name, value.strip(" \t"), raw))
    return out


# field-name (as written) -> canonical key, for names already validated as tokens. Bounded,
# so hostile traffic with endless new names cannot grow it; unknown names use the slow path.
_NAME_KEYS: dict[str, str] = {}
_NAME_KEYS_MAX = 4096


def _remember(name: str, key: str) -> None:
    if len(_NAME_KEYS) < _NAME_KEYS_MAX:
        _NAME_KEYS[name] = key


def _parse_lines(lines: list[str]) -> list[HeaderField]:
    out: list[HeaderField] = []
    compact = COMPACT_FORMS
    for raw in lines:
        name, colon, value = raw.partition(":")
        if not colon:
            raise SipParseError(400, "Malformed header line")
        if HEADER_NAME_RE.fullmatch(name) is None:
            raise SipParseError(400, "Malformed header name")
        if "\r\n" in value:
            value = FOLD_RE.sub(" ", value)
        name = name.rstrip(" \t")
        key = name.lower()
        key = compact.get(key, key)
        if name == raw[: len(name)] and raw[len(name)] == ":":
            _remember(name, key)
        out.append((key, name, value.strip(" \t"), raw))
    return out


def _logical_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not out:
                raise SipParseError(400, "Continuation line without header")
            out[-1] = out[-1] + "\r\n" + line
        else:
            out.append(line)
    return out


def content_length(fields: list[HeaderField]) -> int | None:
    """The Content-Length value; several differing values are an error (RFC 4475 3.1.4.9)."""
    values = [f[2] for f in fields if f[0] == "content-length"]
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError(400, "Multiple Content-Length values")
    value = values[0]
    if len(value) < 10 and value.isascii() and value.isdigit():
        return int(value)
    return parse_digits(value, "Content-Length", MAX_CONTENT_LENGTH)


def _body(data: bytes, start: int, fields: list[HeaderField], stream: bool) -> bytes:
    length = content_length(fields)
    if length is None:
        if stream:
            raise SipParseError(400, "Missing Content-Length on stream transport")
        return data[start:]
    if len(data) - start < length:
        raise SipParseError(400, "Content-Length larger than message")
    return data[start : start + length]
