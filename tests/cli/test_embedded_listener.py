"""``sessiond run`` on the embedded store, read from outside: ``sessiond ctl`` without
``--redis`` and ``redis-cli -p <printed port>`` see a live call exactly as on a real Redis.

The real CLI in subprocesses, sipp as the caller holding the call; each test has its own
``XDG_RUNTIME_DIR`` so that runs of other tests are not found.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.helpers import free_udp_port
from sessiond.store import Keys
from sessiond.store.embedded import DEFAULT_STORE_PORT
from sessiond_run import ENV, SessiondRun

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
    pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli missing"),
]

STORE = re.compile(r"embedded store on redis://127\.0\.0\.1:(\d+)/0")


class Run(SessiondRun):
    """``sessiond run`` (embedded store) in a subprocess, on a free SIP port."""

    stop_timeout = 30.0

    def __init__(self, tmp: Path, env: dict[str, str], name: str, *options: str) -> None:
        base = 27000 + (os.getpid() % 100) * 40 + (20 if name.endswith("2") else 0)
        rtp = ["--rtp-ports", f"{base}-{base + 19}"]
        super().__init__(tmp / f"{name}.log", *options, "--rate-limit", "1000", *rtp, env=env)
        match = STORE.search(self.log())  # logged before the edge answers SIP
        self.store_port = int(match.group(1)) if match else 0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    return {**ENV, "XDG_RUNTIME_DIR": str(runtime)}


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def redis_cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ctl_and_redis_cli_read_a_live_call(
    tmp_path: Path, env: dict[str, str], runs: list[Run]
) -> None:
    run = Run(tmp_path, env, "run", "--store-port", "0", "--partitions", "8")
    runs.append(run)
    assert run.store_port, run.log()
    caller = subprocess.Popen(
        ["sipp", "-sn", "uac", "-m", "1", "-d", "60000", "-s", "bob"]
        + ["-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-buff_size", "4194304"]
        + ["-nostdin", "-timeout", "90", f"127.0.0.1:{run.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        listed = ""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            result = ctl(env, "list")  # no --redis: the state file of the run
            assert result.returncode == 0, result.stderr
            listed = result.stdout
            if "Established" in listed:
                break
            time.sleep(0.5)
        assert "1 session(s)" in listed, (listed, run.log())
        assert "Established" in listed, (listed, run.log())
        sid = next(line.split()[0] for line in listed.splitlines() if "Established" in line)

        # redis-cli on the printed port reads the session hash, as on a real Redis
        key = Keys().session(sid)
        fields = redis_cli(run.store_port, "HGETALL", key).splitlines()
        session = dict(zip(fields[::2], fields[1::2], strict=False))
        assert session["sid"] == sid
        assert session["state"] == "Established"
        assert session["role"] == "UAS"
        assert key in redis_cli(run.store_port, "--scan", "--pattern", "sessiond:*:session:*")

        # ctl writes through it too, on the run's partitions (8, taken from the state file)
        result = ctl(env, "hangup", sid)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Established" in ctl(env, "list").stdout:
            time.sleep(0.5)
        assert "Established" not in ctl(env, "list").stdout, run.log()
    finally:
        if caller.poll() is None:
            caller.kill()
        caller.wait()


def test_store_port_off(tmp_path: Path, env: dict[str, str], runs: list[Run]) -> None:
    run = Run(tmp_path, env, "off", "--store-port", "off")
    runs.append(run)
    assert run.store_port == 0, run.log()
    result = ctl(env, "list")
    assert result.returncode == 2
    assert "no local `sessiond run`" in result.stderr


def test_default_port_fallback_and_several_runs(
    tmp_path: Path, env: dict[str, str], runs: list[Run]
) -> None:
    """The default store port when it is free, any free one when it is not (here it is held,
    by this test or by something else); two runs make ctl ask which one; the state file goes
    away with the run."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            holder.bind(("127.0.0.1", DEFAULT_STORE_PORT))
            holder.listen(1)
        except OSError:
            pass  # already taken by someone else: the same situation for the run
        first = Run(tmp_path, env, "run1")
        runs.append(first)
    finally:
        holder.close()
    assert first.store_port, first.log()
    assert first.store_port != DEFAULT_STORE_PORT
    assert redis_cli(first.store_port, "PING").strip() == "PONG"
    result = ctl(env, "list")
    assert result.returncode == 0, result.stderr
    assert "0 session(s)" in result.stdout

    second = Run(tmp_path, env, "run2", "--store-port", "0")
    runs.append(second)
    result = ctl(env, "workers")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "several local `sessiond run`" in lines[0]
    assert f":{first.store_port}/0" in lines[0]
    assert f":{second.store_port}/0" in lines[0]

    second.stop()
    first.stop()
    assert not list((Path(env["XDG_RUNTIME_DIR"]) / "sessiond").glob("run-*.json"))
    result = ctl(env, "list")
    assert result.returncode == 2
    assert "no local `sessiond run`" in result.stderr
