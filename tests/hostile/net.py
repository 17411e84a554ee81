"""Loopback-only helpers for the hostile-traffic tests: SIP requests, UDP/TCP attackers bound
to 127.0.0.x source addresses (each attack its own, so the per-source rate limit of one does
not touch the legitimate caller on 127.0.0.1), and /proc readings of a process."""

from __future__ import annotations

import os
import socket
import time
import uuid

LOOPBACK = ("127.0.0.1", "::1")


def check_target(host: str) -> None:
    """Every load loop here targets loopback only."""
    if host not in LOOPBACK:
        raise AssertionError(f"hostile traffic only to loopback, not {host}")


def request(
    method: str,
    port: int,
    src: tuple[str, int],
    *,
    user: str = "bob",
    call_id: str | None = None,
    branch: str | None = None,
    to_tag: str | None = None,
    cseq: int = 1,
    transport: str = "UDP",
    extra: str = "",
    body: str = "",
) -> bytes:
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
    to = f"<sip:{user}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:{user}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {src[0]}:{src[1]};branch={branch};rport\r\n"
        f"From: <sip:{user}@{src[0]}>;tag=f{uuid.uuid4().hex[:8]}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:{user}@{src[0]}:{src[1]}>\r\n{extra}"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()


SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class UdpAttacker:
    """One UDP socket on ``127.0.0.<n>``; ``send`` and ``replies`` (status lines)."""

    def __init__(self, source: str, port: int) -> None:
        check_target("127.0.0.1")
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((source, 0))
        self.addr: tuple[str, int] = self.sock.getsockname()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def replies(self, quiet: float = 0.5, limit: float = 10.0) -> list[bytes]:
        """Every datagram received until ``quiet`` seconds pass without one (at most
        ``limit`` seconds in all)."""
        out: list[bytes] = []
        deadline = time.monotonic() + limit
        self.sock.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                out.append(self.sock.recv(65535))
            except TimeoutError:
                break
        return out

    def close(self) -> None:
        self.sock.close()


def status(reply: bytes) -> int:
    """The status code of a response (0 for anything else)."""
    parts = reply.split(b" ", 2)
    ok = len(parts) > 1 and parts[0] == b"SIP/2.0" and parts[1].isdigit()
    return int(parts[1]) if ok else 0


def header(reply: bytes, name: str) -> str | None:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.decode(errors="replace").partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_sockets(port: int) -> int:
    """TCP sockets on local ``port`` that are still open on our side: ESTABLISHED, or
    CLOSE_WAIT (the peer closed, we did not: a leak). Kernel-wide, so connections the test
    process opens elsewhere (its Redis pool) do not count."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state = fields[1], fields[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state in ("01", "08"):
                    count += 1
    return count
