"""Independent checks for media interop tests: pcap/RTP decoding, WAV analysis, app events.

Nothing here imports sessiond's media code, so a bug there cannot hide itself in the check:
the pcap reader, the RFC 4733 payload parser, the G.711 A-law decoder and the Goertzel filter
are written from the specifications.
"""

from __future__ import annotations

import math
import struct
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from api.audio_checks import goertzel

DTMF_EVENTS = "0123456789*#ABCD"
_PCAP_MAGIC_LE = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Rtp:
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    src_port: int = 0  # UDP ports, from a pcap
    dst_port: int = 0


def pcap_rtp(path: str | Path) -> list[Rtp]:
    """The RTP packets of a classic little-endian Ethernet/IPv4/UDP pcap (sipp's pcaps)."""
    data = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    if magic != _PCAP_MAGIC_LE or linktype != _LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: not a little-endian Ethernet pcap")
    out = []
    offset = 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        ihl = (frame[14] & 0x0F) * 4
        ports = struct.unpack_from("!HH", frame, 14 + ihl)
        rtp = frame[14 + ihl + 8 :]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        csrc = (rtp[0] & 0x0F) * 4
        seq, ts, ssrc = struct.unpack_from("!HII", rtp, 2)
        marker, payload = bool(rtp[1] & 0x80), rtp[12 + csrc :]
        out.append(Rtp(rtp[1] & 0x7F, marker, seq, ts, ssrc, payload, *ports))
    return out


def pcap_udp(path: str | Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of every IPv4 UDP datagram of a classic
    little-endian Ethernet pcap."""
    data = Path(path).read_bytes()
    out = []
    offset = 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] == b"\x08\x00" and frame[23] == 17:
            ihl = (frame[14] & 0x0F) * 4
            src, dst = struct.unpack_from("!HH", frame, 14 + ihl)
            out.append((src, dst, frame[14 + ihl + 8 :]))
    return out


def telephone_event_digits(packets: list[Rtp], payload_type: int) -> list[str]:
    """RFC 4733 digits carried by ``packets``: one per distinct event (RTP timestamp)."""
    digits = []
    seen: set[tuple[int, int]] = set()
    for p in packets:
        if p.payload_type != payload_type or len(p.payload) < 4:
            continue
        key = (p.ssrc, p.timestamp)
        if key not in seen:
            seen.add(key)
            digits.append(DTMF_EVENTS[p.payload[0]])
    return digits


def alaw_to_linear(octet: int) -> int:
    """ITU-T G.711 A-law expansion of one octet to a 16-bit sample."""
    a = octet ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if a & 0x80 else -magnitude


def ulaw_to_linear(octet: int) -> int:
    """ITU-T G.711 mu-law expansion of one octet to a 16-bit sample."""
    u = ~octet & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84 << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


def g711_pcm(packets: list[Rtp]) -> array[int]:
    """The G.711 audio of ``packets`` (PCMU, payload type 0, or PCMA, 8) as 16-bit samples."""
    out = array("h")
    for p in packets:
        if p.payload_type == 0:
            out.extend(ulaw_to_linear(b) for b in p.payload)
        elif p.payload_type == 8:
            out.extend(alaw_to_linear(b) for b in p.payload)
    return out


def alaw_pcm(packets: list[Rtp], payload_type: int = 8) -> array[int]:
    """The A-law audio of ``packets`` decoded to 16-bit samples, in sequence order."""
    out = array("h")
    for p in packets:
        if p.payload_type == payload_type:
            out.extend(alaw_to_linear(b) for b in p.payload)
    return out


def ulaw_pcm(payloads: list[bytes]) -> array[int]:
    """RTP payloads decoded as mu-law (PCMU) 16-bit samples, in the order given."""
    out = array("h")
    for payload in payloads:
        out.extend(ulaw_to_linear(b) for b in payload)
    return out


def tone_share(samples: array[int] | list[int], freq: float, rate: int = 8000) -> float:
    """The share of the signal's energy at ``freq``: about 1 for a pure tone (less with a
    window that cuts it mid-period), about 2/N for noise (what encrypted bytes decode to)."""
    energy = sum(s * s for s in samples)
    if not energy:
        return 0.0
    return goertzel(samples, freq, rate) / (energy * len(samples) / 2)


def read_wav(path: str | Path) -> tuple[int, array[int]]:
    """(sample rate, mono 16-bit samples) of a WAV file; fails on anything else."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"{path}: {w.getsampwidth() * 8}-bit, expected 16"
        assert w.getnchannels() == 1, f"{path}: {w.getnchannels()} channels, expected mono"
        rate = w.getframerate()
        samples = array("h", w.readframes(w.getnframes()))
    return rate, samples


def write_tone_wav(path: str | Path, freq: float, seconds: float, rate: int = 8000) -> None:
    """A mono 16-bit sine WAV (amplitude 10000)."""
    samples = array(
        "h",
        (
            round(10000 * math.sin(2 * math.pi * freq * n / rate))
            for n in range(int(seconds * rate))
        ),
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def rms(samples: array[int] | list[int]) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def goertzel_power(samples: array[int] | list[int], freq: float, rate: int) -> float:
    """Power of one frequency bin (Goertzel), normalised by the number of samples squared."""
    n = len(samples)
    if n == 0:
        return 0.0
    return goertzel(samples, freq, rate) / (n * n)


def dominant_tone(
    samples: array[int] | list[int], rate: int, candidates: list[float]
) -> tuple[float, dict[float, float]]:
    """The candidate frequency with the most power, and every candidate's power."""
    powers = {f: goertzel_power(samples, f, rate) for f in candidates}
    return max(powers, key=powers.__getitem__), powers


def loudest_window(samples: array[int], rate: int, seconds: float = 1.0) -> array[int]:
    """The ``seconds``-long window (hop 0.1 s) with the highest RMS."""
    size = int(rate * seconds)
    if len(samples) <= size:
        return samples
    hop = rate // 10
    best = max(range(0, len(samples) - size + 1, hop), key=lambda i: rms(samples[i : i + size]))
    return samples[best : best + size]


def app_events(redis: Any, stream: str) -> list[dict[str, Any]]:
    """Every entry of an application event stream: type, sid, id and the msgpack data."""
    out = []
    for _, fields in redis.xrange(stream):
        f = {k.decode(): v for k, v in fields.items()}
        data = msgpack.unpackb(f["data"]) if "data" in f else {}
        out.append(
            {
                "type": f["type"].decode(),
                "sid": f.get("sid", b"").decode(),
                "id": f["id"].decode(),
                "data": data,
            }
        )
    return out
