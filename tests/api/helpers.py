"""Helpers of the API tests: free ports, sipp scenarios, a `sessiond run` subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ports import free_port
from sipp_scenarios import uac_refused


def free_udp_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1, outside the ephemeral range."""
    return free_port()


ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}

# A caller that expects its call to be refused with 486 Busy Here.
UAC_486 = uac_refused(486)


class Service:
    """``sessiond run --redis URL --namespace NS --answer app`` as a subprocess."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path) -> None:
        self.port = free_udp_port()
        self.namespace = namespace
        self.tmp = tmp
        self._log = open(tmp / "sessiond.log", "wb")  # noqa: SIM115 - closed in stop()
        base = 23000 + (os.getpid() % 100) * 50
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond", "run", "--redis", redis_url]
            + ["--namespace", namespace, "--answer", "app", "--rtp-ports", f"{base}-{base + 49}"]
            + ["--listen", f"udp:127.0.0.1:{self.port}", "--rate-limit", "1000"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=tmp,
        )
        wait_listening(self.port)

    def log(self) -> str:
        return (self.tmp / "sessiond.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Wait until something answers SIP OPTIONS on udp 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        msg = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{s.getsockname()[1]};branch=z9hG4bK-w\r\n"
            "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        s.settimeout(0.3)
        while time.monotonic() < deadline:
            s.sendto(msg, ("127.0.0.1", port))
            try:
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            except OSError:
                pass
    raise TimeoutError(f"nothing answers SIP on udp 127.0.0.1:{port}")


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


def sipp_stats(stdout: str) -> tuple[int, int]:
    """(successful, failed) calls from sipp's final screen."""
    ok = failed = -1
    for line in stdout.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2].split()[0])
        elif "Failed call" in line:
            failed = int(line.split("|")[2].split()[0])
    return ok, failed
