"""``sessiond media`` as a real process: arguments, heartbeat, SIGTERM drain and exit."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis as sync_redis

from sessiond.cli.media import add_parser, run_media

from .node_helpers import free_range

pytestmark = pytest.mark.redis
SERVICE = Path(__file__).resolve().parents[2] / "service"
MAIN = """
import argparse, sys
from sessiond.cli.media import add_parser
parser = argparse.ArgumentParser(prog="sessiond")
add_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def test_add_parser_registers_the_media_command() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["media", "--redis", "embedded", "--rtp-ports", "20000-20999", "--address", "127.0.0.1"]
    )
    assert args.func is run_media
    assert (args.rtp_timeout, args.metrics_port, args.name) == (30.0, 0, None)


def test_process_heartbeats_and_exits_on_sigterm(redis_url: str) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    first, last = free_range()
    env = {**os.environ, "PYTHONPATH": f"{SERVICE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [sys.executable, "-c", MAIN, "media", "--redis", redis_url, "--address", "127.0.0.1"]
    argv += ["--rtp-ports", f"{first}-{last}", "--name", "mp1", "--namespace", namespace]
    client = sync_redis.Redis.from_url(redis_url)
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        heartbeat = f"{namespace}:process:media:mp1"
        deadline = time.monotonic() + 10
        while not client.exists(heartbeat):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # drain: no legs, so it exits at once
        assert proc.wait(timeout=10) == 0
        assert not client.exists(heartbeat)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()
