"""``sessiond run`` as a subprocess, and the OPTIONS probe that tells when a SIP port answers:
the one copy the API, worker, CLI and end-to-end tests start their services with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ports import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}


def wait_listening(
    port: int,
    timeout: float = 15.0,
    *,
    any_answer: bool = False,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something answers SIP OPTIONS on 127.0.0.1:port (UDP) with 200 (or with
    any response, for an edge that refuses this source); give up early once ``proc`` exits."""
    msg = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-w"
        f"\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        msg = msg.replace(b"127.0.0.1:9;", f"127.0.0.1:{s.getsockname()[1]};".encode())
        s.settimeout(0.3)
        last = "nothing"
        while time.monotonic() < deadline and (proc is None or proc.poll() is None):
            s.sendto(msg, ("127.0.0.1", port))
            try:
                reply = s.recv(4096)
                if reply.startswith(b"SIP/2.0 200") or any_answer and reply.startswith(b"SIP/2.0"):
                    return
                last = repr(reply.split(b"\r\n", 1)[0])
            except OSError:
                pass
        raise TimeoutError(f"no 200 to OPTIONS on udp 127.0.0.1:{port}; last answer: {last}")


class SessiondRun:
    """``sessiond run OPTIONS`` listening on a free UDP port of 127.0.0.1 (``port``), its
    output (stdout and stderr) in ``log_path``; constructed once the port answers OPTIONS."""

    stop_timeout = 15.0

    def __init__(
        self,
        log_path: Path,
        *options: str,
        env: dict[str, str] = ENV,
        cwd: Path | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log:  # the child holds its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sessiond", "run", *options]
                + ["--listen", f"udp:127.0.0.1:{self.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )
        try:
            wait_listening(self.port, timeout, proc=self.proc)
        except TimeoutError:
            raise RuntimeError(f"sessiond run did not start:\n{self.stop()[-3000:]}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM, wait for the exit (children included; SIGKILL after ``stop_timeout``);
        the whole output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log()
