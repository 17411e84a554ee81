"""RTCP packets, compound parsing, report interval and the RTP session object."""

from __future__ import annotations

import random

import pytest

from sessiond.media.errors import RtpError
from sessiond.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpInterval,
    RtcpUnknown,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
)
from sessiond.media.rtp import RtpPacket
from sessiond.media.rtp_session import (
    Dropped,
    RtcpReceived,
    RtpReceived,
    RtpSession,
    RtpTimeout,
    SourceLatched,
    Transmit,
)

BLOCK = ReportBlock(0x1234, 25, -3, 70000, 42, 0xAABBCCDD, 65536)
PEER = ("192.0.2.10", 4000)


def test_compound_round_trip_with_unknown_type() -> None:
    packets = [
        SenderReport(1, ntp_timestamp(1_700_000_000.5), 160, 10, 1600, (BLOCK,)),
        SourceDescription(((1, ((1, b"alice@example.com"), (6, b"tool"))),)),
        RtcpUnknown(204, 1, b"\x00\x00\x00\x01NAME\x01\x02\x03\x04"),  # APP
        Bye((1, 2), b"hangup"),
    ]
    data = b"".join(map(bytes, packets))
    assert parse_compound(data) == packets
    assert b"".join(map(bytes, parse_compound(data))) == data


def test_receiver_report_and_block_fields() -> None:
    rr = ReceiverReport(9, (BLOCK, BLOCK))
    (parsed,) = parse_compound(bytes(rr))
    assert parsed == rr
    assert len(bytes(rr)) == 8 + 2 * 24
    assert bytes(rr)[:2] == b"\x82\xc9"  # V=2, RC=2, PT=201


def test_golden_rr_from_the_wire() -> None:
    # RR from SSRC 0x01020304 with one block about 0x0A0B0C0D: fraction 1, lost 2, ...
    wire = bytes.fromhex("81c90007 01020304 0a0b0c0d 01000002 00010005 00000010 11223344 00000100")
    (rr,) = parse_compound(wire)
    assert rr == ReceiverReport(
        0x01020304, (ReportBlock(0x0A0B0C0D, 1, 2, 0x10005, 16, 0x11223344, 256),)
    )
    assert bytes(rr) == wire


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9",
        bytes.fromhex("40c90001 00000000"),  # version 1
        bytes.fromhex("80c90005 00000000"),  # length beyond data
        bytes.fromhex("81c90001 00000000"),  # one report block announced, none present
        bytes.fromhex("a0c90001 00000000") + bytes.fromhex("80c90001 00000000"),  # P not last
    ],
)
def test_malformed_rtcp_raises(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_compound(data)


def test_ntp_conversion() -> None:
    ntp = ntp_timestamp(0.5)
    assert ntp >> 32 == 2208988800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle(ntp) == ((2208988800 & 0xFFFF) << 16) | 0x8000


def test_interval_is_randomised_around_five_seconds() -> None:
    rng = random.Random(1)
    interval = RtcpInterval(0.0, rng)
    assert 2.5 * 0.5 / 1.2183 <= interval.next_time <= 2.5 * 1.5 / 1.2182
    gaps = []
    now = interval.next_time
    for _ in range(500):
        interval.sent(now)
        gaps.append(interval.next_time - now)
        now = interval.next_time
    assert min(gaps) >= 2.5 / 1.2183
    assert max(gaps) <= 7.5 / 1.2182
    assert sum(gaps) / len(gaps) == pytest.approx(5.0 / 1.21828, rel=0.05)


def session(now: float = 0.0, timeout: float | None = 10.0) -> RtpSession:
    return RtpSession(
        clock_rate=8000,
        remote_rtp=PEER,
        remote_rtcp=None,
        now=now,
        rng=random.Random(3),
        inactivity_timeout=timeout,
    )


def rtp(seq: int, ssrc: int = 77) -> bytes:
    return bytes(RtpPacket(0, seq, seq * 160, ssrc, b"\xff" * 160))


def test_send_advances_seq_and_timestamp() -> None:
    s = session()
    first = RtpPacket.parse(s.send(b"a" * 160, payload_type=0, samples=160, now=0.0).data)
    second = RtpPacket.parse(s.send(b"b" * 160, payload_type=0, samples=160, now=0.02).data)
    assert second.sequence_number == (first.sequence_number + 1) % 65536
    assert second.timestamp == (first.timestamp + 160) % 2**32
    assert first.ssrc == second.ssrc == s.ssrc


def test_latches_to_the_source_actually_seen() -> None:
    s = session()
    nat = ("203.0.113.9", 61000)
    events = s.receive(rtp(1), nat, 0.0)
    assert events[0] == SourceLatched(nat, None)
    assert isinstance(events[1], RtpReceived)
    assert s.send(b"x", payload_type=0, samples=160, now=0.0).address == nat


def test_relatch_needs_consecutive_packets_from_new_source() -> None:
    s = session()
    first, second = ("203.0.113.9", 61000), ("203.0.113.9", 62000)
    s.receive(rtp(1), first, 0.0)
    for i in range(4):
        (event,) = s.receive(rtp(2 + i), second, 0.02 * i)
        assert isinstance(event, Dropped)
    events = s.receive(rtp(6), second, 0.1)
    assert events[0] == SourceLatched(second, first)
    # Packets from the old address are now the stray ones.
    assert isinstance(s.receive(rtp(7), first, 0.12)[0], Dropped)


def test_garbage_is_dropped_not_raised() -> None:
    s = session()
    (event,) = s.receive(b"\x00\x01garbage", PEER, 0.0)
    assert isinstance(event, Dropped)


def test_inactivity_timeout_fires_once_and_rearms() -> None:
    s = session(timeout=10.0)
    s.receive(rtp(1), PEER, 1.0)
    assert s.get_timer() <= 11.0
    assert not any(isinstance(e, RtpTimeout) for e in s.handle_timer(10.9))
    assert RtpTimeout(1.0) in s.handle_timer(11.0)
    assert not any(isinstance(e, RtpTimeout) for e in s.handle_timer(30.0))
    s.receive(rtp(2), PEER, 31.0)
    assert RtpTimeout(31.0) in s.handle_timer(41.0)


def test_reports_are_emitted_on_the_rtcp_interval_with_stats() -> None:
    s = session(timeout=None)
    for seq in range(100):
        if seq != 50:
            s.receive(rtp(seq), PEER, seq * 0.02)
        s.send(b"\xff" * 160, payload_type=0, samples=160, now=seq * 0.02)
    now, sent = 0.0, []
    while now < 20.0:
        now = s.get_timer()
        sent += [e for e in s.handle_timer(now) if isinstance(e, Transmit)]
    assert 3 <= len(sent) <= 9
    sr, sdes = parse_compound(sent[0].data)
    assert isinstance(sr, SenderReport)
    assert isinstance(sdes, SourceDescription)
    assert sr.packet_count == 100
    assert sr.reports[0].cumulative_lost == 1
    assert sr.reports[0].ssrc == 77
    assert sent[0].address == PEER


def test_rtcp_from_peer_sets_lsr_and_bye_on_close() -> None:
    s = session(timeout=None)
    s.receive(rtp(1), PEER, 0.0)
    s.receive(rtp(2), PEER, 0.02)
    sr = SenderReport(77, ntp_timestamp(100.0), 0, 2, 320)
    (event,) = s.receive(bytes(sr), PEER, 1.0)
    assert isinstance(event, RtcpReceived)
    packets = parse_compound(s.close(3.0).data)
    assert isinstance(packets[0], ReceiverReport)
    block = packets[0].reports[0]
    assert block.lsr == ntp_middle(sr.ntp_timestamp)
    assert block.dlsr == 2 * 65536
    assert packets[-1] == Bye((s.ssrc,))
