"""atheris target: ``SessionDescription.parse`` (parse, serialize, re-parse, typed views).

The SDP crashes already reported (``contracts.known_sdp_bug``) are let through so that a run
looks for new ones; set FUZZ_SDP_STRICT=1 to stop on them too."""

from __future__ import annotations

import os

from _target import contracts, main

STRICT = os.environ.get("FUZZ_SDP_STRICT") == "1"


def test_one_input(data: bytes) -> None:
    contracts.check_sdp(data, tolerate_known=not STRICT)


if __name__ == "__main__":
    main(test_one_input)
