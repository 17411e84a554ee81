"""G.711 PCMU (mu-law) and PCMA (A-law), table driven.

The segment/quantisation rules are ITU-T G.711 tables 1a and 2a as expressed in the widely used
Sun Microsystems reference code: mu-law works on the 14 most significant bits with a bias of 33
and clips at 8159; A-law works on 13 bits, with even bits inverted (``^ 0x55``). Tables are built
once at import: 256 decode entries and 65536 encode entries (indexed by the unsigned 16-bit
sample), so a 20 ms frame is coded with C-level ``map``/``translate`` and no per-sample Python
calls.

PCM is signed 16-bit little-endian mono.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_BIG_ENDIAN = sys.byteorder == "big"


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def ulaw_encode_sample(sample: int) -> int:
    """Encode one signed 16-bit sample to a mu-law code (G.711 table 2a)."""
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 33
    seg = _segment(value, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def ulaw_decode_sample(code: int) -> int:
    """Decode one mu-law code to a signed 16-bit sample."""
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def alaw_encode_sample(sample: int) -> int:
    """Encode one signed 16-bit sample to an A-law code (G.711 table 1a)."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    seg = _segment(value, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((value >> shift) & 0x0F)) ^ mask


def alaw_decode_sample(code: int) -> int:
    """Decode one A-law code to a signed 16-bit sample."""
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


def _encode_table(encode: Callable[[int], int]) -> bytes:
    return bytes(encode(u - 65536 if u >= 32768 else u) for u in range(65536))


def _decode_tables(decode: Callable[[int], int]) -> tuple[bytes, bytes]:
    values = [decode(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


ULAW_ENCODE = _encode_table(ulaw_encode_sample)
ALAW_ENCODE = _encode_table(alaw_encode_sample)
_ULAW_LO, _ULAW_HI = _decode_tables(ulaw_decode_sample)
_ALAW_LO, _ALAW_HI = _decode_tables(alaw_decode_sample)


def _samples(pcm: bytes) -> memoryview | array[int]:
    if len(pcm) % 2:
        raise ValueError("PCM16 data must have an even number of octets")
    if _BIG_ENDIAN:
        swapped = array("H", pcm)
        swapped.byteswap()
        return swapped
    return memoryview(pcm).cast("H")


def _decode(data: bytes, lo: bytes, hi: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(lo)
    out[1::2] = data.translate(hi)
    return bytes(out)


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode little-endian PCM16 to mu-law, one octet per sample."""
    return bytes(map(ULAW_ENCODE.__getitem__, _samples(pcm)))


def ulaw_decode(data: bytes) -> bytes:
    """Decode mu-law to little-endian PCM16."""
    return _decode(data, _ULAW_LO, _ULAW_HI)


def alaw_encode(pcm: bytes) -> bytes:
    """Encode little-endian PCM16 to A-law, one octet per sample."""
    return bytes(map(ALAW_ENCODE.__getitem__, _samples(pcm)))


def alaw_decode(data: bytes) -> bytes:
    """Decode A-law to little-endian PCM16."""
    return _decode(data, _ALAW_LO, _ALAW_HI)
