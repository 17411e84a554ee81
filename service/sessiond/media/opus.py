"""Opus (RFC 6716, RTP payload RFC 7587) through PyAV's libopus, in 8 kHz app frames.

The encoder is fed 8 kHz mono directly (libopus accepts 8 kHz input natively) and produces one
20 ms packet per app frame. The decoder always outputs 48 kHz, which an ``AudioResampler`` brings
to 8 kHz mono; its output goes through a small FIFO so every call returns exactly the samples of
the packet's duration (the resampler's start-up delay is filled with silence once).
The RTP clock is 48 kHz whatever the audio bandwidth (RFC 7587 section 4.1).
"""

from __future__ import annotations

import fractions

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.codec.context import CodecContext

from sessiond.media.codecs import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from sessiond.media.errors import CodecError

RTP_CLOCK = 48000


class OpusCodec:
    """Stateful Opus encoder + decoder for one stream."""

    name = "opus"
    clock_rate = RTP_CLOCK
    samples_per_frame = RTP_CLOCK * FRAME_SAMPLES // SAMPLE_RATE

    def __init__(self, payload_type: int, bit_rate: int = 24000) -> None:
        self.payload_type = payload_type
        try:
            enc = CodecContext.create("libopus", "w")
            dec = CodecContext.create("libopus", "r")
        except (av.FFmpegError, ValueError) as exc:  # pragma: no cover - build without libopus
            raise CodecError(f"libopus is not available: {exc}") from exc
        enc.sample_rate = SAMPLE_RATE
        enc.layout = "mono"
        enc.format = "s16"
        enc.bit_rate = bit_rate
        enc.options = {"application": "voip"}
        enc.time_base = fractions.Fraction(1, SAMPLE_RATE)
        dec.sample_rate = RTP_CLOCK
        dec.layout = "mono"
        dec.format = "s16"
        self._encoder = enc
        self._decoder = dec
        self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._pts = 0
        self._fifo = bytearray()
        self._primed = False

    def encode(self, pcm: bytes) -> bytes:
        """Encode one 20 ms 8 kHz PCM16 frame into one Opus packet."""
        if len(pcm) != FRAME_BYTES:
            raise CodecError(f"Opus frames must be {FRAME_BYTES} octets, got {len(pcm)}")
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.sample_rate = SAMPLE_RATE
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        packets = self._encoder.encode(frame)
        return b"".join(bytes(p) for p in packets)

    def decode(self, payload: bytes) -> bytes:
        """Decode one Opus packet into 8 kHz PCM16 (one app frame per 20 ms of audio)."""
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            raise CodecError(f"undecodable Opus packet: {exc}") from exc
        wanted = 0
        for decoded in frames:
            assert isinstance(decoded, AudioFrame)
            wanted += decoded.samples * SAMPLE_RATE // RTP_CLOCK * 2
            for out in self._resampler.resample(decoded):
                self._fifo += bytes(out.planes[0])[: out.samples * 2]
        if not self._primed and wanted:
            self._primed = True
            self._fifo[:0] = bytes(max(0, wanted - len(self._fifo)))
        chunk = bytes(self._fifo[:wanted])
        del self._fifo[:wanted]
        return chunk + bytes(wanted - len(chunk))
