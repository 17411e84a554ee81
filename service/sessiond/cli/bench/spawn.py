"""The processes the benches start and stop: a private ``redis-server`` on a free loopback
port, ``python -m sessiond ROLE`` processes running this package, and stopping them
(SIGTERM, then SIGKILL after a grace period). One place for what every bench did again."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redis as sync_redis

LISTEN_PORTS = range(10000, 20000)  # below the kernel's ephemeral range (32768-60999)
ATTEMPTS = 3  # a port found free can be taken before our process binds it: tries
#: edge options of every bench: sipp is one source address, and the per-source limits
#: (rate, calls) would measure themselves
ONE_SOURCE = ("--rate-limit", "1000000", "--rate-burst", "1000000", "--max-calls-per-source", "0")
#: where this package is imported from: the sessiond processes a bench starts run it too
PACKAGE_ROOT = Path(__file__).resolve().parents[3]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listen_port() -> int:
    """A port on 127.0.0.1 free for UDP and TCP now, outside the ephemeral range (a port
    the kernel hands out from there can become any client's source port a moment later)."""
    for _ in range(500):
        port = random.choice(LISTEN_PORTS)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise OSError("no free port in 10000-19999 on 127.0.0.1")


def missing_tool(bench: str, tools: dict[str, str]) -> bool:
    """Print ``sessiond bench BENCH needs TOOL (Debian package P)`` for the first of
    ``tools`` (command -> package) not installed; True when one is missing."""
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            print(
                f"sessiond bench {bench} needs {tool} (Debian package {package})", file=sys.stderr
            )
            return True
    return False


def stop(*procs: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM to every process still running, then wait for each; one that is still there
    after ``timeout`` seconds is killed."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in running:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def popen_logged(cmd: Sequence[str], log: Path, **kw: object) -> subprocess.Popen[bytes]:
    """``cmd`` with stdout and stderr to ``log`` (the child keeps its own descriptor)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return subprocess.Popen(cmd, stdout=fd, stderr=fd, **kw)  # type: ignore[call-overload, no-any-return]
    finally:
        os.close(fd)


def sessiond_env(**extra: str) -> dict[str, str]:
    """The environment of a sessiond child: this package first on ``PYTHONPATH``."""
    path = str(PACKAGE_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": path, **extra}


def sessiond(args: Sequence[str], log: Path, **kw: object) -> subprocess.Popen[bytes]:
    """``python -m sessiond ARGS`` (this package), its output to ``log``."""
    cmd = [sys.executable, "-m", "sessiond", *args]
    return popen_logged(cmd, log, env=sessiond_env(), **kw)


def redis_server(work: Path, *config: str) -> tuple[subprocess.Popen[bytes], int]:
    """A private redis-server (no snapshots, ``config`` added, its output to
    ``<work>/redis-<port>.log``) on a free loopback port, answering PING: (process, port).
    TimeoutError when it did not start (a port taken meanwhile is tried again)."""
    for _ in range(ATTEMPTS):
        port = listen_port()
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work)]
        cmd += ["--save", "", *config]
        proc = popen_logged(cmd, work / f"redis-{port}.log", cwd=work)
        client = sync_redis.Redis(port=port, socket_timeout=1)
        try:
            deadline = time.monotonic() + 15
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return proc, port
                except sync_redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        stop(proc)
    raise TimeoutError(f"redis-server did not start ({ATTEMPTS} tries; logs in {work})")
