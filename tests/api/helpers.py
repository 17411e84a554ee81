"""Helpers of the API tests: free ports, sipp scenarios, a `sessiond run --redis` subprocess."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ports import free_port
from sessiond import Client
from sessiond_run import SessiondRun
from sipp_scenarios import uac_refused


def free_udp_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1, outside the ephemeral range."""
    return free_port()


# A caller that expects its call to be refused with 486 Busy Here.
UAC_486 = uac_refused(486)


class Service(SessiondRun):
    """``sessiond run --redis URL`` with ``options``, in namespace ``namespace`` (default: a
    new one), answering SIP on ``port``."""

    def __init__(self, redis_url: str, tmp: Path, *options: str, namespace: str = "") -> None:
        self.redis_url = redis_url
        self.namespace = namespace or f"h{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        base = 23000 + (os.getpid() % 100) * 50
        super().__init__(
            tmp / "sessiond.log",
            *("--redis", redis_url, *options, "--namespace", self.namespace),
            *("--rtp-ports", f"{base}-{base + 49}", "--rate-limit", "1000"),
            cwd=tmp,
        )

    def log(self) -> str:
        return super().log()[-3000:]

    def client(self, group: str) -> Client:
        return Client(self.redis_url, namespace=self.namespace, group=group)


def sipp_command(tmp: Path, *args: str, port: int = 0) -> list[str]:
    """A bounded sipp run on loopback, on SIP ``port`` (default: a free one)."""
    return [
        "sipp",
        "-buff_size",
        "4194304",
        "-nostdin",
        "-timeout",
        "25",
        "-p",
        str(port or free_udp_port()),
        "-mp",
        str(free_udp_port()),
        "-trace_err",
        "-error_file",
        str(tmp / "sipp_errors.log"),
        *args,
    ]
