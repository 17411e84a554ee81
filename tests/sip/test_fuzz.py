"""Property tests: any input parses or raises SipParseError; parsed messages round-trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.sip.errors import SipParseError
from sessiond.sip.framing import StreamFramer
from sessiond.sip.message import SipRequest, parse_message
from sessiond.sip.stateless import error_response
from sessiond.sip.validate import validate_request

from .rfc4475 import VALID

SEEDS = list(VALID.values())


def _parse_or_reject(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        _answer(data, exc)
        return
    # A message we accepted must serialize to bytes we accept again, identically.
    assert bytes(parse_message(bytes(msg))) == bytes(msg)
    if isinstance(msg, SipRequest):
        try:
            validate_request(msg)
        except SipParseError as exc:
            _answer(data, exc)


def _answer(data: bytes, error: SipParseError) -> None:
    assert 400 <= error.status < 600
    answer = error_response(data, error)
    assert answer is None or answer.startswith(b"SIP/2.0 %d " % error.status)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    _parse_or_reject(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=4)), max_size=4),
)
def test_mutated_torture_messages_never_crash(seed: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(seed)
    for pos, chunk in edits:
        pos %= len(data) + 1
        data[pos : pos + len(chunk)] = chunk
    _parse_or_reject(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(1, 50), st.binary(max_size=30))
def test_framer_never_crashes(seed: bytes, cut: int, junk: bytes) -> None:
    framer = StreamFramer(max_header=4096, max_body=4096)
    error: SipParseError | None = None
    try:
        for i in range(0, len(seed) + len(junk), cut):
            framer.feed((seed + junk)[i : i + cut])
    except SipParseError as exc:
        error = exc
    assert error is None or error.status in (400, 513)
