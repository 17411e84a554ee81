"""Helpers of the API tests: free ports, sipp scenarios, a `sessiond run` subprocess."""

from __future__ import annotations

import socket


def free_udp_port() -> int:
    """A UDP port nothing is bound to right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
