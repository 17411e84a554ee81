"""Parser inputs found while fuzzing and reviewing (regressions), and a short bounded mutation
fuzz of the SDP and RTP/RTCP parsers (the SIP parser has one in tests/sip/test_fuzz.py). The
contracts are those the atheris targets check (fuzz/contracts.py); no atheris needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))
import contracts  # noqa: E402
import seeds  # noqa: E402
from fuzz_sip_framer_chunks import chunks_of  # noqa: E402

from sessiond.sip.message import parse_message  # noqa: E402

INVITE = (
    "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1;"
    "rport={rport}\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: x\r\n"
    "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("rport", ["\u00b2", "9" * 5000, "99999999"])
def test_via_rport_that_is_not_a_port_is_none(rport: str) -> None:
    """Via.rport used str.isdigit(), which admits "²" and 5,000-digit strings: int() then
    raised ValueError (not SipParseError) to whoever read it."""
    msg = parse_message(INVITE.format(rport=rport).encode())
    assert msg.top_via is not None
    assert msg.top_via.rport is None
    contracts.check_sip_message(INVITE.format(rport=rport).encode())


SDP = (
    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)
KNOWN_SDP_CRASHES = {
    "ptime-inf": SDP + "a=ptime:inf\r\n",
    "ptime-1e400": SDP + "a=ptime:1e400\r\n",
    "origin-superscript": SDP.replace("o=- 1 1", "o=- \u00b2 1"),
    "origin-5000-digits": SDP.replace("o=- 1 1", "o=- " + "9" * 5000 + " 1"),
    "port-superscript": SDP.replace("4000", "\u00b9"),
    "format-superscript": SDP.replace("RTP/AVP 0", "RTP/AVP \u00b2"),
    "rtpmap-superscript": SDP + "a=rtpmap:\u00b2 x/8000\r\n",
    "rtpmap-rate-5000-digits": SDP + "a=rtpmap:96 x/" + "9" * 5000 + "\r\n",
}


@pytest.mark.parametrize("name", sorted(KNOWN_SDP_CRASHES))
def test_sdp_known_crashes(name: str) -> None:
    """Once crashes (ValueError/OverflowError from isdigit() on '²', 5,000-digit numbers,
    ptime inf); now SdpError, so the media node answers 488."""
    contracts.check_sdp(KNOWN_SDP_CRASHES[name].encode())


SDP_SEEDS = list(seeds.sdp_seeds().values())
RTP_SEEDS = list(seeds.rtp_seeds().values())
Edits = list[tuple[int, bytes]]
EDITS = st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=6)), max_size=5)


def _mutate(seed: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(seed)
    for pos, chunk in edits:
        pos %= len(data) + 1
        data[pos : pos + len(chunk)] = chunk
    return bytes(data)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(SDP_SEEDS), EDITS)
def test_mutated_sdp_parses_or_raises_sdp_error(
    seed: bytes, edits: list[tuple[int, bytes]]
) -> None:
    contracts.check_sdp(_mutate(seed, edits))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_sdp(data: bytes) -> None:
    contracts.check_sdp(data)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(RTP_SEEDS), EDITS)
def test_mutated_rtp_and_rtcp(seed: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = _mutate(seed, edits)
    contracts.check_rtp(data)
    contracts.check_rtcp(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(seeds.sip_seeds().values())), st.integers(0, 255), EDITS)
def test_framer_in_random_chunks(
    seed: bytes, cut_seed: int, edits: list[tuple[int, bytes]]
) -> None:
    """Two copies of a (mutated) torture message on one stream, cut as the atheris target
    cuts it (its first byte seeds the cut sizes)."""
    contracts.check_framer(chunks_of(bytes((cut_seed,)) + _mutate(seed, edits) * 2))


_INVITE = INVITE.format(rport="5062").replace(
    "Max-Forwards", "Contact: <sip:a@127.0.0.1>\r\nMax-Forwards"
)
EDGE_PATH_CRASHES = {
    "f1-call-id": _INVITE.replace("Call-ID: x", "Call-ID: x\udcc3"),
    "via-branch": _INVITE.replace("z9hG4bK-1", "z9hG4bK-1\udcf2"),
    "from-tag": _INVITE.replace("tag=1", "tag=1\udcff"),
    "bye-to-tag": _INVITE.replace("INVITE", "BYE").replace(
        "<sip:b@127.0.0.1>", "<sip:b@127.0.0.1>;tag=\udcc3"
    ),
    "response-reason": "SIP/2.0 200 \udcc3K\r\n" + _INVITE.split("\r\n", 1)[1],
    "response-bad-contact": "SIP/2.0 200 OK\r\n"
    + _INVITE.split("\r\n", 1)[1].replace("<sip:a@127.0.0.1>\r\n", "<sip:a@h>;;\r\n"),
    "response-contact": "SIP/2.0 200 OK\r\n"
    + _INVITE.split("\r\n", 1)[1].replace("<sip:a@127.0.0.1>\r\n", "<sip:\udcc3@h>\r\n"),
}


@pytest.mark.parametrize("name", sorted(EDGE_PATH_CRASHES))
def test_edge_path_known_crashes(name: str) -> None:
    """Issue 18, F1 and what fuzz/fuzz_edge_path.py found on 3043fbc within 20 s: bytes that
    are not UTF-8 in a field that becomes an event field or Redis key raised
    UnicodeEncodeError in encode_event (or in redis-py's encoding of the answered-request
    key) inside the edge, and a stray 200 whose Contact does not parse raised SipParseError
    from response_event; now such a request gets a stateless 400, a response with such bytes
    is dropped, and a response's Contact that does not parse maps to no contact."""
    contracts.check_edge_path(EDGE_PATH_CRASHES[name].encode("utf-8", "surrogateescape"))


def test_edge_path_seeds() -> None:
    for data in seeds.edge_path_seeds().values():
        contracts.check_edge_path(data)
