"""atheris target: the TCP ``StreamFramer`` fed the input in pseudo-random chunks (the first
byte seeds the cut sizes), every framed message parsed. Usage as the other targets."""

from __future__ import annotations

from _target import contracts, main
from fuzz_sip_framer_chunks import chunks_of


def test_one_input(data: bytes) -> None:
    contracts.check_framer(chunks_of(data))


if __name__ == "__main__":
    main(test_one_input)
