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


TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters=","),
    max_size=20,
)


@st.composite
def extension_lines(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name, value, raw line) with optional space before the colon and folding."""
    name = "X-" + draw(tokens)
    words = draw(st.lists(values.filter(bool), min_size=1, max_size=3))
    gap = draw(st.sampled_from(["", " ", "\t "]))
    separators = [draw(st.sampled_from([" ", "\r\n ", "\r\n\t", " \r\n  "])) for _ in words[1:]]
    raw_value = words[0] + "".join(s + w for s, w in zip(separators, words[1:], strict=True))
    return name, " ".join(words), f"{name}{gap}: {raw_value}"


@settings(max_examples=300, deadline=None)
@given(tokens, st.lists(extension_lines(), max_size=6), st.binary(max_size=40))
def test_generated_requests_round_trip_and_unfold(
    method: str, lines: list[tuple[str, str, str]], body: bytes
) -> None:
    head = [
        f"{method} sip:user@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKgen",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:b@example.com>",
        "Call-ID: gen@example.com",
        f"CSeq: 1 {method}",
        *(raw for _, _, raw in lines),
        f"Content-Length: {len(body)}",
    ]
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert bytes(msg) == data
    assert isinstance(msg, SipRequest)
    assert msg.method == method
    assert msg.body == body
    for name, value, _ in lines:
        assert value in msg.headers.get_all(name)
