"""How the framer target cuts its input into reads (no atheris: tests/hostile uses it too)."""

from __future__ import annotations

import random


def chunks_of(data: bytes) -> list[bytes]:
    """The first byte seeds the cut sizes (1 byte to 4 kB); the rest is the stream."""
    if not data:
        return []
    rng = random.Random(data[0])
    rest, out, pos = data[1:], [], 0
    while pos < len(rest):
        size = rng.choice((1, 2, 3, 7, 64, 500, 4096))
        out.append(rest[pos : pos + size])
        pos += size
    return out
