"""RTP packets, wrap-around arithmetic and reception statistics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.media.errors import RtpError
from sessiond.media.rtp import RtpExtension, RtpPacket, is_rtcp, seq_diff, ts_diff, unwrap
from sessiond.media.rtp_stats import ReceptionStats

# PCMU, seq 0x1234, ts 0xA0, ssrc 0xDEADBEEF, marker set, 4 payload octets.
GOLDEN = bytes.fromhex("80 80 12 34 00 00 00 a0 de ad be ef ff ff 7f 7f")
# CC=2, X=1 (profile 0xBEDE, one word), P=1 with 3 padding octets.
GOLDEN_FULL = bytes.fromhex(
    "b2 08 00 07 00 00 01 40 00 00 00 2a"
    " 00 00 00 01 00 00 00 02"
    " be de 00 01 10 aa 00 00"
    " d5 d5"
    " 00 00 03"
)


def test_golden_packet_fields_and_round_trip() -> None:
    packet = RtpPacket.parse(GOLDEN)
    assert packet == RtpPacket(0, 0x1234, 0xA0, 0xDEADBEEF, b"\xff\xff\x7f\x7f", marker=True)
    assert bytes(packet) == GOLDEN


def test_csrc_extension_padding_round_trip() -> None:
    packet = RtpPacket.parse(GOLDEN_FULL)
    assert packet.csrc == (1, 2)
    assert packet.extension == RtpExtension(0xBEDE, b"\x10\xaa\x00\x00")
    assert packet.padding == 3
    assert packet.payload == b"\xd5\xd5"
    assert (packet.payload_type, packet.sequence_number, packet.timestamp) == (8, 7, 320)
    assert bytes(packet) == GOLDEN_FULL


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GOLDEN[:11],
        b"\x40" + GOLDEN[1:],  # version 1
        b"\x8f" + GOLDEN[1:],  # 15 CSRCs announced, none present
        b"\x90" + GOLDEN[1:12] + b"\xbe\xde",  # extension header truncated
        b"\x90" + GOLDEN[1:12] + b"\xbe\xde\x00\x09",  # extension longer than packet
        b"\xa0" + GOLDEN[1:-1] + b"\x00",  # padding count 0
        b"\xa0" + GOLDEN[1:-1] + b"\x09",  # padding longer than payload
    ],
)
def test_malformed_packets_raise(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(bytes(packet)) == packet


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    padding=st.integers(0, 255),
)
def test_built_packets_round_trip(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrc: tuple[int, ...],
    padding: int,
) -> None:
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, None, padding)
    assert RtpPacket.parse(bytes(packet)) == packet


def test_rtcp_demultiplexing() -> None:
    assert not is_rtcp(GOLDEN)
    assert is_rtcp(bytes.fromhex("80c80006"))  # SR
    assert is_rtcp(bytes.fromhex("81c90007"))  # RR
    assert not is_rtcp(bytes.fromhex("80e0"))  # PT 96 with marker


def test_wrap_arithmetic() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 100) == 0
    assert seq_diff(0x8000, 0) == -0x8000
    assert ts_diff(80, 0xFFFFFFB0) == 160
    assert ts_diff(0xFFFFFFB0, 80) == -160
    assert unwrap(5, 65530, 16) == 65536 + 5
    assert unwrap(65530, 65536 + 5, 16) == 65530
    assert unwrap(10, 3 * 65536 + 20, 16) == 3 * 65536 + 10


def feed(stats: ReceptionStats, seqs: list[int], start: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq % 65536, (seq * 160) % 2**32, start + i * 0.02)


def test_stats_extended_sequence_across_wrap() -> None:
    stats = ReceptionStats(1, 8000)
    feed(stats, list(range(65530, 65536 + 10)))
    assert stats.extended_max == 65536 + 9
    assert stats.cycles == 65536
    assert stats.lost == 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_stats_loss_and_fraction() -> None:
    stats = ReceptionStats(1, 8000)
    seqs = [s for s in range(100) if s % 10 != 5]  # lose 10 of 100
    feed(stats, seqs)
    block = stats.report_block()
    assert block.cumulative_lost == 10
    assert block.fraction_lost == (10 * 256) // 100
    assert block.highest_sequence == 99
    feed(stats, list(range(100, 150)), start=10.0)  # no loss in the next interval
    block = stats.report_block()
    assert block.fraction_lost == 0
    assert block.cumulative_lost == 10


def test_stats_duplicates_make_loss_negative() -> None:
    stats = ReceptionStats(1, 8000)
    feed(stats, [0, 1, 2, 3, 3, 3])
    assert stats.lost == -2


def test_stats_probation_and_restart() -> None:
    stats = ReceptionStats(1, 8000)
    assert not stats.update(10, 0, 0.0)  # on probation
    assert stats.update(11, 160, 0.02)
    assert not stats.update(30000, 0, 0.04)  # big jump: not trusted yet
    assert stats.update(30001, 160, 0.06)  # confirmed: source restarted
    assert stats.base_seq == 30001
    assert stats.lost == 0


def test_jitter_follows_a8() -> None:
    stats = ReceptionStats(1, 8000)
    # Arrivals alternate 0 and +10 ms late: |D| = 80 timestamp units each time.
    for i in range(400):
        stats.update(i, i * 160, i * 0.02 + (0.01 if i % 2 else 0.0))
    assert stats.jitter == pytest.approx(80.0, rel=0.01)
