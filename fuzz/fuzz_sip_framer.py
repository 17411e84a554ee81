"""atheris target: the TCP ``StreamFramer`` fed the input in pseudo-random chunks (the first
byte seeds the cut sizes), every framed message parsed. Usage as the other targets."""

from __future__ import annotations

import random

from _target import contracts, main


def chunks_of(data: bytes) -> list[bytes]:
    if not data:
        return []
    rng = random.Random(data[0])
    rest, out, pos = data[1:], [], 0
    while pos < len(rest):
        size = rng.choice((1, 2, 3, 7, 64, 500, 4096))
        out.append(rest[pos : pos + size])
        pos += size
    return out


def test_one_input(data: bytes) -> None:
    contracts.check_framer(chunks_of(data))


if __name__ == "__main__":
    main(test_one_input)
