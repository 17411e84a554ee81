"""atheris target: ``SessionDescription.parse`` (parse, serialize, re-parse, typed views)."""

from __future__ import annotations

from _target import contracts, main


def test_one_input(data: bytes) -> None:
    contracts.check_sdp(data)


if __name__ == "__main__":
    main(test_one_input)
