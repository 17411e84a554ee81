"""SRTP/SRTCP through libsrtp: round trips per suite, tampering, replay, known vectors."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.media.errors import CryptoError, MediaError, SrtpError
from sessiond.media.rtcp import ReceiverReport, SenderReport, parse_compound
from sessiond.media.rtp import RtpPacket
from sessiond.media.sdes import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    SUITES,
    NegotiatedCrypto,
    Suite,
    accept_answer,
    make_offer,
    select_answer,
)
from sessiond.media.srtp import SrtpSession

ALL_SUITES = list(SUITES.values())
# Authentication tag bytes added to each RTP packet (RFC 3711 section 4.2; RFC 7714 section 7).
RTP_TAG = {
    AES_CM_128_HMAC_SHA1_80: 10,
    AES_CM_128_HMAC_SHA1_32: 4,
    AEAD_AES_128_GCM: 16,
    AEAD_AES_256_GCM: 16,
}


def pair(suite: Suite) -> tuple[SrtpSession, SrtpSession]:
    """Two ends that agreed on ``suite`` through SDES offer/answer."""
    offer = make_offer([suite])
    line, answerer = select_answer([a.wire() for a in offer])
    offerer = accept_answer(offer, [line.wire()])
    return SrtpSession.from_negotiated(offerer), SrtpSession.from_negotiated(answerer)


def rtp(seq: int, payload: bytes = b"\xff" * 160, ssrc: int = 0x1234ABCD) -> bytes:
    return bytes(RtpPacket(0, seq, seq * 160, ssrc, payload))


def rtcp() -> bytes:
    return bytes(SenderReport(0x1234ABCD, 1 << 40, 4000, 25, 4000)) + bytes(
        ReceiverReport(0x1234ABCD)
    )


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_rtp_round_trip_both_directions(suite: Suite) -> None:
    alice, bob = pair(suite)
    for seq in range(1, 40):
        plain = rtp(seq, bytes([seq]) * 160)
        wire = alice.protect(plain)
        assert len(wire) == len(plain) + RTP_TAG[suite]
        assert wire[:12] == plain[:12]  # header in clear, payload not
        assert wire[12:172] != plain[12:]
        assert bob.unprotect(wire) == plain
        back = rtp(seq, b"\x01" * 80, ssrc=0x0BADCAFE)
        assert alice.unprotect(bob.protect(back)) == back
    assert RtpPacket.parse(bob.unprotect(alice.protect(rtp(100)))).sequence_number == 100


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_rtcp_round_trip(suite: Suite) -> None:
    alice, bob = pair(suite)
    for _ in range(3):
        plain = rtcp()
        wire = alice.protect_rtcp(plain)
        assert wire != plain
        assert len(wire) > len(plain) + 4  # SRTCP index (E flag set) and tag
        assert bob.unprotect_rtcp(wire) == plain
        assert parse_compound(bob.unprotect_rtcp(alice.protect_rtcp(plain)))


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_tampered_packets_are_refused_as_auth_failures(suite: Suite) -> None:
    alice, bob = pair(suite)
    wire = bytearray(alice.protect(rtp(1)))
    wire[20] ^= 0x01
    with pytest.raises(SrtpError) as info:
        bob.unprotect(bytes(wire))
    assert info.value.reason == SrtpError.AUTH
    assert isinstance(info.value, MediaError)
    control = bytearray(alice.protect_rtcp(rtcp()))
    control[10] ^= 0x80
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtcp(bytes(control))
    assert info.value.reason == SrtpError.AUTH
    # Our own key does not open our own packets: each direction has its own key.
    with pytest.raises(SrtpError):
        alice.unprotect(alice.protect(rtp(2)))
    # The stream still works after the refusals.
    assert bob.unprotect(alice.protect(rtp(3))) == rtp(3)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_replayed_packets_are_refused(suite: Suite) -> None:
    alice, bob = pair(suite)
    first = alice.protect(rtp(10))
    assert bob.unprotect(first) == rtp(10)
    with pytest.raises(SrtpError) as info:
        bob.unprotect(first)
    assert info.value.reason == SrtpError.REPLAY
    # Reordered (not replayed) packets inside the window are fine.
    later, earlier = alice.protect(rtp(12)), alice.protect(rtp(11))
    assert bob.unprotect(later) == rtp(12)
    assert bob.unprotect(earlier) == rtp(11)
    control = alice.protect_rtcp(rtcp())
    bob.unprotect_rtcp(control)
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtcp(control)
    assert info.value.reason == SrtpError.REPLAY


def test_packet_older_than_the_replay_window_is_refused() -> None:
    alice, bob = pair(AES_CM_128_HMAC_SHA1_80)
    old = alice.protect(rtp(1))
    for seq in range(2, 200):
        bob.unprotect(alice.protect(rtp(seq)))
    with pytest.raises(SrtpError) as info:
        bob.unprotect(old)
    assert info.value.reason == SrtpError.REPLAY


def test_sender_refuses_to_reuse_a_sequence_number() -> None:
    alice, _ = pair(AES_CM_128_HMAC_SHA1_80)
    alice.protect(rtp(5))
    with pytest.raises(SrtpError) as info:
        alice.protect(rtp(5))
    assert info.value.reason == SrtpError.REPLAY


@pytest.mark.parametrize(
    "packet", [b"", b"\x80", b"garbage", b"\x80\x00" + b"\x00" * 4000], ids=repr
)
def test_malformed_input_is_a_typed_error(packet: bytes) -> None:
    alice, bob = pair(AES_CM_128_HMAC_SHA1_80)
    for operation in (bob.unprotect, bob.unprotect_rtcp, alice.protect):
        with pytest.raises(SrtpError) as info:
            operation(packet)
        assert "\n" not in str(info.value)


@settings(max_examples=50)
@given(st.binary(max_size=200))
def test_any_bytes_unprotect_or_raise_srtp_error(data: bytes) -> None:
    session = SrtpSession(AEAD_AES_128_GCM, b"\x01" * 28, b"\x02" * 28)
    for operation in (session.unprotect, session.unprotect_rtcp):
        try:
            operation(data)
        except SrtpError:
            pass


# libsrtp's own reference packets (test/srtp_driver.c, srtp_validate and srtp_validate_gcm):
# SSRC 0xcafebabe, seq 0x1234, 16 bytes of 0xab; the 32-bit-tag suite differs only by the tag.
VECTOR_RTP = bytes.fromhex("800f1234decafbadcafebabe" + "ab" * 16)
VECTOR_RTCP = bytes.fromhex("81c8000bcafebabe" + "ab" * 16)
VECTORS = [
    (
        AES_CM_128_HMAC_SHA1_80,
        "e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6",
        "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb",
        "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798",
    ),
    (
        AES_CM_128_HMAC_SHA1_32,
        "e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6",
        "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc",
        "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798",
    ),
    (
        AEAD_AES_128_GCM,
        "000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6a7a8a9aaab",
        "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392",
        "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001",
    ),
]


@pytest.mark.parametrize(("suite", "key", "srtp", "srtcp"), VECTORS, ids=lambda v: str(v)[:24])
def test_known_vectors(suite: Suite, key: str, srtp: str, srtcp: str) -> None:
    """Interop: the key travels as SDES inline text, then matches libsrtp's reference packets
    (which also checks the RFC 3711 section 4.3 key derivation end to end)."""
    master = bytes.fromhex(key)
    sender = NegotiatedCrypto(suite, 1, master, b"\x00" * suite.key_salt_length)
    receiver = NegotiatedCrypto(suite, 1, b"\x00" * suite.key_salt_length, master)
    out, inbound = SrtpSession.from_negotiated(sender), SrtpSession.from_negotiated(receiver)
    assert out.protect(VECTOR_RTP).hex() == srtp
    assert out.protect_rtcp(VECTOR_RTCP).hex() == srtcp
    assert inbound.unprotect(bytes.fromhex(srtp)) == VECTOR_RTP
    assert inbound.unprotect_rtcp(bytes.fromhex(srtcp)) == VECTOR_RTCP


def test_vector_key_through_sdes_text() -> None:
    """The AES-CM reference key, written as an a=crypto line by the peer, decodes to the same
    session (the base64 below is that key, as a peer would send it)."""
    key = bytes.fromhex(VECTORS[0][1])
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}|2^31"
    ours, negotiated = select_answer([line])
    assert negotiated.remote_key == key
    session = SrtpSession.from_negotiated(negotiated)
    assert session.unprotect(bytes.fromhex(VECTORS[0][2])) == VECTOR_RTP
    assert ours.key == negotiated.local_key


def test_bad_keys_and_window_are_crypto_errors() -> None:
    with pytest.raises(CryptoError, match="30-byte key"):
        SrtpSession(AES_CM_128_HMAC_SHA1_80, b"\x00" * 30, b"\x00" * 29)
    with pytest.raises(CryptoError, match="28-byte key"):
        SrtpSession(AEAD_AES_128_GCM, b"\x00" * 30, b"\x00" * 30)
    with pytest.raises(CryptoError, match="not supported"):
        SrtpSession(Suite("AES_256_CM_HMAC_SHA1_80", 32, 14), b"\x00" * 46, b"\x00" * 46)
    with pytest.raises(CryptoError, match="replay window"):
        SrtpSession(AES_CM_128_HMAC_SHA1_80, b"\x00" * 30, b"\x00" * 30, window=32)


def test_session_repr_hides_keys() -> None:
    local, remote = b"\x11" * 30, b"\x22" * 30
    session = SrtpSession(AES_CM_128_HMAC_SHA1_80, local, remote, window=1024)
    for text in (repr(session), str(session)):
        assert text == "SrtpSession(suite=AES_CM_128_HMAC_SHA1_80, keys=<hidden>)"
    with pytest.raises(SrtpError) as info:
        session.unprotect(b"\x80" * 40)
    assert local.hex() not in str(info.value)
    assert remote.hex() not in str(info.value)


def test_rekeyed_keeps_what_did_not_change() -> None:
    """A re-negotiation that changes only the peer's key keeps our sender (its rollover
    counter and replay list: the same sequence number twice is still refused), a change of
    our key or suite makes a new session, and an unchanged outcome keeps the session."""
    suite = AES_CM_128_HMAC_SHA1_80
    ours, theirs = b"\x01" * 30, b"\x02" * 30
    crypto = NegotiatedCrypto(suite, 1, ours, theirs)
    session = SrtpSession.from_negotiated(crypto)
    session.protect(rtp(1))
    assert session.rekeyed(crypto) is session
    new_peer_key = NegotiatedCrypto(suite, 1, ours, b"\x03" * 30)
    assert session.rekeyed(new_peer_key) is session
    with pytest.raises(SrtpError):
        session.protect(rtp(1))  # our sender went on: no keystream reuse
    peer = SrtpSession(suite, b"\x03" * 30, ours)
    assert session.unprotect(peer.protect(rtp(7))) == rtp(7)  # the new inbound key
    new_local = NegotiatedCrypto(suite, 1, b"\x04" * 30, b"\x03" * 30)
    fresh = session.rekeyed(new_local)
    assert fresh is not session
    assert fresh.runs(new_local)
    assert not session.runs(new_local)
