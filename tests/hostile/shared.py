"""Fixtures of other test packages (the e2e harness, the RFC 4475 messages), imported by path:
the test directories are not one package."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402
    Cluster,
    free_port,
    free_rtp_range,
    sipp,
    stats,
    wait_listening,
)
from tests.sip.rfc4475 import VALID  # noqa: E402
from tests.sip.rfc4475_invalid import INVALID  # noqa: E402

__all__ = [
    "INVALID",
    "VALID",
    "Cluster",
    "free_port",
    "free_rtp_range",
    "sipp",
    "stats",
    "wait_listening",
]
