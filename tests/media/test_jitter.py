"""Jitter buffer: loss, bursts, reordering, duplicates, wrap, delay spikes, concealment."""

from __future__ import annotations

from array import array
from collections.abc import Callable

import pytest

from sessiond.media.codecs import FRAME_BYTES, SILENCE, G711Codec
from sessiond.media.jitter import AudioPlayout, Concealer, Idle, JitterBuffer, Missing, Played
from sessiond.media.rtp import RtpPacket

SPF = 160
TICK = 0.02


def packet(i: int, ts_base: int = 1000, ssrc: int = 5) -> RtpPacket:
    return RtpPacket(0, i & 0xFFFF, (ts_base + i * SPF) & 0xFFFFFFFF, ssrc, bytes([i & 0xFF]) * 160)


def simulate(
    n: int,
    delay: Callable[[int], float | None],
    *,
    ts_base: int = 1000,
    extra_ticks: int = 20,
    buffer: JitterBuffer | None = None,
) -> tuple[JitterBuffer, list[tuple[float, Played | Missing | Idle]]]:
    """Send packet i at i*TICK, deliver at i*TICK + delay(i) (None = lost); pop every tick.

    Ticks are offset by half a frame from the send clock, as a real playout clock would be.
    """
    jb = buffer or JitterBuffer(SPF)
    arrivals = sorted((i * TICK + d, i) for i in range(n) if (d := delay(i)) is not None)
    out: list[tuple[float, Played | Missing | Idle]] = []
    k = 0
    for tick in range(n + extra_ticks + 10):
        now = tick * TICK + TICK / 2
        while k < len(arrivals) and arrivals[k][0] <= now:
            jb.push(packet(arrivals[k][1], ts_base), arrivals[k][0])
            k += 1
        out.append((now, jb.pop(now)))
    return jb, out


def played_indexes(out: list[tuple[float, Played | Missing | Idle]]) -> list[int]:
    return [(item.packet.timestamp - 1000) // SPF for _, item in out if isinstance(item, Played)]


def latencies(out: list[tuple[float, Played | Missing | Idle]], ts_base: int = 1000) -> list[float]:
    lat = []
    for now, item in out:
        if isinstance(item, Played):
            i = ((item.packet.timestamp - ts_base) % 2**32) // SPF
            lat.append(round(now - i * TICK, 4))
    return lat


def test_steady_stream_plays_everything_at_target_delay() -> None:
    jb, out = simulate(100, lambda i: 0.005)
    assert played_indexes(out) == list(range(100))
    assert set(latencies(out)) == {0.07}  # target 3 frames (60 ms) + tick phase
    assert jb.missing == len(out) - 100 - 3  # only after the stream ended (3 idle ticks first)
    assert jb.late == 0


def test_one_lost_packet_is_concealed_without_shifting_the_stream() -> None:
    jb, out = simulate(100, lambda i: None if i == 40 else 0.005)
    items = [item for _, item in out]
    assert played_indexes(out) == [i for i in range(100) if i != 40]
    assert set(latencies(out)) == {0.07}  # no shift after the loss
    gap = [x for x in items if isinstance(x, Missing)]
    assert gap[0] == Missing(1000 + 40 * SPF, 1)


def test_burst_loss_is_concealed_and_stream_continues() -> None:
    jb, out = simulate(100, lambda i: None if 30 <= i < 40 else 0.005)
    assert played_indexes(out) == [i for i in range(100) if not 30 <= i < 40]
    assert set(latencies(out)) == {0.07}
    runs = [item.run for _, item in out if isinstance(item, Missing)][:10]
    assert runs == list(range(1, 11))


def test_reordering_within_the_buffer_is_repaired() -> None:
    # Every 7th packet overtakes its predecessor by 30 ms.
    jb, out = simulate(100, lambda i: 0.035 if i % 7 == 3 else (0.0 if i % 7 == 4 else 0.01))
    assert played_indexes(out) == list(range(100))
    assert jb.late == 0


def test_duplicates_are_dropped() -> None:
    jb = JitterBuffer(SPF)
    assert jb.push(packet(0), 0.0)
    assert not jb.push(packet(0), 0.001)
    assert jb.push(packet(1), 0.02)
    assert jb.duplicates == 1
    assert jb.pop(0.1) == Played(packet(0))
    assert not jb.push(packet(0), 0.11)  # already played: late, not a duplicate slot
    assert jb.late == 1


def test_timestamp_and_sequence_wrap() -> None:
    base = 2**32 - 50 * SPF
    jb, out = simulate(100, lambda i: 0.005, ts_base=base)
    played = [item for _, item in out if isinstance(item, Played)]
    assert len(played) == 100
    assert played[60].packet.timestamp == (base + 60 * SPF) % 2**32
    assert set(latencies(out, base)) == {0.07}


def test_delay_spike_returns_to_target() -> None:
    # Packets 50..59 are held up and arrive together 250 ms late (a stall then a burst).
    def delay(i: int) -> float:
        return 0.005 + (0.25 - (i - 50) * TICK if 50 <= i < 60 else 0.0)

    jb, out = simulate(200, delay)
    assert len(out) == 230  # one item per tick, always
    lat = latencies(out)
    assert lat[:45] == [0.07] * 45
    assert lat[-100:] == [0.07] * 100  # back at the target, not permanently delayed
    assert jb.late > 0
    assert jb.resyncs == 0


def test_permanent_delay_increase_resyncs_and_settles() -> None:
    jb, out = simulate(300, lambda i: 0.005 if i < 100 else 0.125)
    lat = latencies(out)
    assert jb.resyncs == 1
    assert lat[-100:] == [lat[-1]] * 100
    assert lat[-1] <= 0.125 + 0.07  # new path delay + at most the target
    assert played_indexes(out)[-1] == 299


def test_sender_clock_faster_than_ours_is_trimmed() -> None:
    # The sender's 20 ms is our 19.6 ms: 2% drift; depth must stay bounded.
    jb = JitterBuffer(SPF)
    depths = []
    sent = 0
    for tick in range(1000):
        now = tick * TICK + TICK / 2
        while sent * 0.0196 + 0.005 <= now:
            jb.push(packet(sent), sent * 0.0196 + 0.005)
            sent += 1
        jb.pop(now)
        depths.append(jb.depth)
    assert max(depths[200:]) <= jb.target + 2
    assert jb.trimmed > 0


def test_idle_before_start_and_restart_after_long_gap() -> None:
    jb = JitterBuffer(SPF)
    assert isinstance(jb.pop(0.0), Idle)
    jb.push(packet(0), 0.0)
    assert isinstance(jb.pop(0.03), Idle)  # not yet target delay
    assert isinstance(jb.pop(0.07), Played)
    for t in range(60):
        jb.pop(0.09 + t * TICK)
    assert isinstance(jb.pop(2.0), Idle)  # gave up after idle_frames
    jb.push(packet(500), 2.0)  # talkspurt after silence suppression
    assert isinstance(jb.pop(2.07), Played)


def test_new_ssrc_restarts_the_buffer() -> None:
    jb = JitterBuffer(SPF)
    jb.push(packet(0), 0.0)
    jb.pop(0.07)
    jb.push(packet(0, ts_base=99999, ssrc=6), 0.08)
    assert isinstance(jb.pop(0.09), Idle)
    assert jb.pop(0.15) == Played(packet(0, ts_base=99999, ssrc=6))


def pcm_frame(value: int) -> bytes:
    return array("h", [value] * 160).tobytes()


def test_concealer_fades_then_silence() -> None:
    c = Concealer(gain=0.5, max_repeats=2)
    c.good(pcm_frame(1000))
    assert c.conceal() == pcm_frame(500)
    assert c.conceal() == pcm_frame(250)
    assert c.conceal() is None  # faded out: silence, nothing of what arrived is left
    assert c.good(pcm_frame(7)) == pcm_frame(7)


@pytest.mark.parametrize("lost", [set(), {3}, {3, 4, 5, 6, 7}])
def test_audio_playout_emits_one_full_frame_per_tick(lost: set[int]) -> None:
    codec = G711Codec("PCMU", 0)
    playout = AudioPlayout({0: codec})
    frames = []
    for tick in range(30):
        now = tick * TICK
        if tick < 20 and tick not in lost:
            payload = codec.encode(pcm_frame(4000))
            playout.push(RtpPacket(0, tick, tick * SPF, 1, payload), now)
        frames.append(playout.pop(now + 0.001))
    assert all(len(f) == FRAME_BYTES for f in frames)
    decoded = codec.decode(codec.encode(pcm_frame(4000)))
    assert frames.count(decoded) == 20 - len(lost)
    assert not playout.push(RtpPacket(101, 99, 0, 1, b"\x01\x00\x00\xa0"), 1.0)


def test_audio_playout_gives_the_shared_silence_when_nothing_arrived() -> None:
    """What a bridge relays under ``--idle-rtp keepalive``: the SILENCE object itself while
    playout is idle or priming and once a gap is past the concealment's fade; a frame of its
    own while audio plays or a loss inside the talkspurt is concealed."""
    codec = G711Codec("PCMU", 0)
    playout = AudioPlayout({0: codec})
    assert playout.pop(0.0) is SILENCE  # nothing received yet
    payload = codec.encode(pcm_frame(4000))
    frames = []
    for tick in range(20):
        now = tick * TICK
        if tick < 8 and tick != 5:  # one loss, then the sender stops
            playout.push(RtpPacket(0, tick, tick * SPF, 1, payload), now)
        frames.append(playout.pop(now + 0.001))
    started = next(i for i, f in enumerate(frames) if f is not SILENCE)
    assert started >= 2  # priming (target 3 frames) relays nothing
    assert all(f is SILENCE for f in frames[:started])
    talk = frames[started : started + 8]  # 7 packets and the concealed loss, 2 faded frames
    assert all(f is not SILENCE for f in talk)
    assert talk.count(codec.decode(payload)) == 7
    assert all(f is SILENCE for f in frames[started + 10 :])  # past the fade: nothing
