"""CSeq (RFC 3261 20.16) and the small scalar header fields.

::

    CSeq         = "CSeq" HCOLON 1*DIGIT LWS Method
    Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT
    Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT

8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer and be less
than 2**31.  20.22: Max-Forwards is an integer in the range 0-255.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sessiond.sip.errors import SipParseError
from sessiond.sip.grammar import TOKEN
from sessiond.sip.memo import Memo

CSEQ_RE = re.compile(r"[ \t]*([0-9]+)[ \t]+(" + TOKEN + r")[ \t]*")
MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    """Sequence number and method of a CSeq header field."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; sequence numbers must be below 2**31."""
        return _PARSED.parse(text, _parse)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


# text -> parsed CSeq ("1 INVITE", "2 BYE"... recur). Bounded: emptied when full.
_PARSED: Memo[CSeq] = Memo()


def _parse(text: str) -> CSeq:
    m = CSEQ_RE.fullmatch(text)
    if m is None:
        raise SipParseError(400, "Malformed CSeq")
    digits, method = m.groups()
    seq = int(digits) if len(digits) <= 10 else MAX_CSEQ + 1
    if seq > MAX_CSEQ:
        raise SipParseError(400, "CSeq number too large")
    return CSeq(seq, method)


def parse_digits(text: str, what: str, limit: int) -> int:
    """Parse ``1*DIGIT`` with an upper bound (400 ``Malformed <what>`` otherwise)."""
    value = text.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 10 or int(value) > limit:
        raise SipParseError(400, f"Malformed {what}")
    return int(value)
