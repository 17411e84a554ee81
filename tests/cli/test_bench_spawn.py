"""The processes the benches start (``cli/bench/spawn.py``): a private redis-server that
answers and is gone after ``stop``, and ``stop`` ending a process that ignores SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from sessiond.cli.bench.spawn import listen_port, redis_server, stop


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_private_redis_server_answers_until_stopped(tmp_path: Path) -> None:
    proc, port = redis_server(tmp_path, "--appendonly", "no")
    client = sync_redis.Redis(port=port, socket_timeout=2)
    try:
        assert client.set("bench-spawn", "1")
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()
        stop(proc)
    assert proc.returncode == 0  # SIGTERM: a clean shutdown
    assert (tmp_path / f"redis-{port}.log").read_text()


def test_stop_kills_what_ignores_sigterm() -> None:
    code = "import signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    code += "print('ready', flush=True); time.sleep(60)"
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    polite = subprocess.Popen(["sleep", "60"])
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"  # its handler is in place
    stop(stubborn, polite, timeout=1)
    assert stubborn.returncode == -signal.SIGKILL
    assert polite.returncode == -signal.SIGTERM
    stubborn.stdout.close()


def test_listen_ports_are_outside_the_ephemeral_range() -> None:
    assert all(10000 <= listen_port() < 20000 for _ in range(20))
