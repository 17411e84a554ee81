"""atheris target: ``sessiond.sip.message.parse_message`` (datagram and stream rules) and the
edge's admission path. Usage: ``python fuzz/fuzz_sip_message.py CORPUS_DIR [libFuzzer flags]``."""

from __future__ import annotations

from _target import contracts, main


def test_one_input(data: bytes) -> None:
    contracts.check_sip_message(data)
    contracts.check_sip_message(data, stream=True)


if __name__ == "__main__":
    main(test_one_input)
