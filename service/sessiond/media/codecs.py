"""Audio codecs behind one small interface, and a registry keyed by SDP encoding name.

App-facing frame format, for every codec: 20 ms of 8 kHz mono signed 16-bit little-endian PCM
(``FRAME_SAMPLES`` = 160 samples, ``FRAME_BYTES`` = 320 octets). ``samples_per_frame`` is the
RTP timestamp increment per 20 ms, in the codec's *RTP clock* (160 for G.711, 960 for Opus,
whose RTP clock is always 48 kHz: RFC 7587 section 4.1).

Codec objects may hold state (Opus does), so create one per stream and direction-pair with
:func:`create_codec`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sessiond.media import g711
from sessiond.media.errors import CodecError
from sessiond.media.offer_answer import DEFAULT_CODECS
from sessiond.media.sdp import Codec

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = 2 * FRAME_SAMPLES
SILENCE = bytes(FRAME_BYTES)


class AudioCodec(Protocol):
    """What the media process needs from a codec."""

    name: str
    clock_rate: int
    payload_type: int
    samples_per_frame: int

    def encode(self, pcm: bytes) -> bytes:
        """Encode one 20 ms app frame (320 octets of 8 kHz PCM16) into an RTP payload."""
        ...

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload into 8 kHz PCM16 (320 octets for a 20 ms packet)."""
        ...


class G711Codec:
    """PCMU or PCMA (RFC 3551 section 4.5.14): one octet per sample, 8 kHz RTP clock."""

    clock_rate = SAMPLE_RATE
    samples_per_frame = FRAME_SAMPLES

    def __init__(self, name: str, payload_type: int) -> None:
        law = name.upper()
        if law not in ("PCMU", "PCMA"):
            raise CodecError(f"not a G.711 codec: {name}")
        self.name = law
        self.payload_type = payload_type
        self._encode = g711.ulaw_encode if law == "PCMU" else g711.alaw_encode
        self._decode = g711.ulaw_decode if law == "PCMU" else g711.alaw_decode

    def encode(self, pcm: bytes) -> bytes:
        """Encode PCM16 (any whole number of samples) to G.711."""
        return self._encode(pcm)

    def decode(self, payload: bytes) -> bytes:
        """Decode G.711 to PCM16."""
        return self._decode(payload)


def _opus(codec: Codec) -> AudioCodec:
    from sessiond.media.opus import OpusCodec  # PyAV is optional: import on first use

    return OpusCodec(codec.payload_type)


_FACTORIES: dict[str, Callable[[Codec], AudioCodec]] = {
    "pcmu": lambda c: G711Codec("PCMU", c.payload_type),
    "pcma": lambda c: G711Codec("PCMA", c.payload_type),
    "opus": _opus,
}


def supported(codec: Codec) -> bool:
    """True when :func:`create_codec` can build this codec (by name and clock rate)."""
    expected = {"pcmu": 8000, "pcma": 8000, "opus": 48000}.get(codec.name.lower())
    return expected == codec.clock_rate


def create_codec(codec: Codec) -> AudioCodec:
    """A fresh codec instance for a negotiated SDP codec; :class:`CodecError` if unsupported."""
    if not supported(codec):
        raise CodecError(f"unsupported codec {codec.name}/{codec.clock_rate}")
    return _FACTORIES[codec.name.lower()](codec)


def available_codecs() -> tuple[Codec, ...]:
    """The default codecs this installation can actually run (Opus needs PyAV)."""
    usable = []
    for codec in DEFAULT_CODECS:
        try:
            if codec.name != "telephone-event":
                create_codec(codec)
        except (CodecError, ImportError):
            continue
        usable.append(codec)
    return tuple(usable)
