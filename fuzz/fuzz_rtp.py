"""atheris target: ``RtpPacket.parse`` (round trip) and RTCP ``parse_compound``."""

from __future__ import annotations

from _target import contracts, main


def test_one_input(data: bytes) -> None:
    contracts.check_rtp(data)
    contracts.check_rtcp(data)


if __name__ == "__main__":
    main(test_one_input)
