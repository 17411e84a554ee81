"""Message framing on stream transports (TCP, TLS, WebSocket-less), RFC 3261 18.3.

Theory of operation
-------------------
:class:`StreamFramer` buffers the bytes of one connection. :meth:`StreamFramer.feed`
appends what a read returned and hands back every complete message (the exact bytes, to
give to :func:`parse_message` with ``stream=True``). A message is complete when its header
section (up to the empty line) and ``Content-Length`` body bytes have arrived.

CRLFs between messages are skipped (7.5); a double-CRLF "ping" (RFC 5626 4.4.1) bumps
:attr:`StreamFramer.pings` so the edge can answer with a single-CRLF "pong", also when its
four bytes arrive in separate reads. A lone CRLF (a "pong", or 7.5 padding) is skipped
without a count.

Memory stays bounded: a header section longer than ``max_header`` raises 513, a
Content-Length above ``max_body`` raises 513, a missing Content-Length raises 400. After
an error the stream cannot be resynchronised: the framer refuses further input and the
connection must be closed (after sending the error response if possible).
"""

from __future__ import annotations

from sessiond.sip.errors import SipParseError
from sessiond.sip.wire import content_length, decode_head, parse_fields

DEFAULT_MAX_HEADER = 16 * 1024
DEFAULT_MAX_BODY = 256 * 1024


class StreamFramer:
    """Sans-I/O splitter of a byte stream into SIP messages."""

    def __init__(
        self, max_header: int = DEFAULT_MAX_HEADER, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self.pings = 0
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the header section
        self._need: int | None = None  # total size of the message being received
        self._failed: SipParseError | None = None
        self._gap = b""  # the CR/LF bytes skipped since the last message or ping (< 4)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages now available, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out: list[bytes] = []
        try:
            while (msg := self._next()) is not None:
                out.append(msg)
        except SipParseError as exc:
            self._failed = exc
            self._buf.clear()
            raise
        return out

    def _next(self) -> bytes | None:
        if self._need is None:
            self._skip_crlf()
            if not self._buf:
                return None
            end = self._buf.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(self._buf) > self.max_header:
                    raise SipParseError(513, "Header section too large")
                self._scan = max(0, len(self._buf) - 3)
                return None
            if end > self.max_header:
                raise SipParseError(513, "Header section too large")
            self._need = end + 4 + self._body_length(end)
            self._gap = b""
        if len(self._buf) < self._need:
            return None
        msg = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        self._need = None
        self._scan = 0
        return msg

    def _skip_crlf(self) -> None:
        n = 0
        buf = self._buf
        while n < len(buf) and buf[n] in (13, 10):
            n += 1
        if n:
            gap = self._gap + bytes(buf[:n])
            found = gap.count(b"\r\n\r\n")
            if found:
                self.pings += found
                gap = gap[gap.rindex(b"\r\n\r\n") + 4 :]
            self._gap = gap[-3:]
            del buf[:n]
            self._scan = 0

    def _body_length(self, end: int) -> int:
        head = decode_head(bytes(self._buf[:end]))
        _, _, rest = head.partition("\r\n")
        length = content_length(parse_fields(rest)) if rest else None
        if length is None:
            raise SipParseError(400, "Missing Content-Length on stream transport")
        if length > self.max_body:
            raise SipParseError(513, f"Body of {length} bytes too large")
        return length
