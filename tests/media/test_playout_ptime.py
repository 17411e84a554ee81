"""Peers may send 10, 20, 30, 40 or 60 ms per packet: playout still yields 20 ms per tick and
neither stretches nor squeezes the audio."""

from __future__ import annotations

import math
from array import array

import pytest

from sessiond.media.codecs import create_codec
from sessiond.media.jitter import AudioPlayout
from sessiond.media.rtp import RtpPacket
from sessiond.media.sdp import Codec

PCMU = Codec(0, "PCMU", 8000)


def tone(samples: int, start: int, hz: float = 400.0) -> bytes:
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * hz * (start + n) / 8000)) for n in range(samples))
    ).tobytes()


@pytest.mark.parametrize("ptime_ms", [10, 20, 30, 40, 60])
def test_any_multiple_of_10ms_plays_at_the_right_speed(ptime_ms: int) -> None:
    codec = create_codec(PCMU)
    playout = AudioPlayout({0: codec})
    per_packet = 8 * ptime_ms
    seconds = 1.2
    packets = int(seconds * 1000 / ptime_ms)
    frames = []
    sent = 0
    for tick in range(int(seconds * 50) + 10):
        now = tick * 0.02
        while sent < packets and sent * ptime_ms / 1000 <= now:
            payload = codec.encode(tone(per_packet, sent * per_packet))
            packet = RtpPacket(0, sent, 1000 + sent * per_packet, 42, payload)
            assert playout.push(packet, now)
            sent += 1
        frames.append(playout.pop(now))
    assert all(len(f) == 320 for f in frames)
    audio = b"".join(frames)
    samples = array("h", audio)
    voiced = [i for i, s in enumerate(samples) if abs(s) > 1000]
    # every sent sample is played once: the voiced span equals what was sent, plus at most the
    # concealment after the last packet (faded repeats of the last 10 ms slice)
    excess = (voiced[-1] - voiced[0]) - packets * per_packet
    assert 0 <= excess <= 3 * 80
    # no gap in the middle: every 10 ms between the first and the last voiced sample is voiced
    middle = samples[voiced[0] : voiced[-1]]
    assert all(max(abs(x) for x in middle[i : i + 80]) > 1000 for i in range(0, len(middle), 80))
