"""What a person (or a log shipper) reads from a real ``sessiond run``: one line per call at
its start, answer and end (sid, Call-ID, from -> to, final code, duration), at INFO by
default; ``--log-format json`` makes every line of every process one JSON object. sipp is
the caller."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.helpers import free_udp_port, sipp_command
from e2e.harness import finished as sipp_stats
from ports import free_port
from sessiond.cli.main import build_parser
from sessiond.core.logs import JsonFormatter
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace
from sessiond_run import SessiondRun
from sipp_scenarios import uac_refused

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Run(SessiondRun):
    """``sessiond run`` as a subprocess on a free port; its output (stdout and stderr)."""

    stop_timeout = 45.0

    def __init__(self, tmp: Path, *options: str) -> None:
        self.tmp = tmp
        rtp = free_udp_port() // 100 * 100
        rtp_ports = ["--rtp-ports", f"{rtp}-{rtp + 99}"]
        super().__init__(tmp / "run.log", *rtp_ports, *options, cwd=tmp, timeout=30)

    def call(self, user: str, *scenario: str) -> tuple[int, int]:
        """One sipp call to ``user``; (successful, failed) calls."""
        command = sipp_command(self.tmp, *scenario, "-m", "1", "-s", user)
        result = subprocess.run(
            [*command, f"127.0.0.1:{self.port}"], capture_output=True, text=True, timeout=60
        )
        return sipp_stats(result.stdout)


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text('rules:\n  - match: {to: "sip:busy@*"}\n    do: {reject: 486}\n')
    return path


def test_text_lines_of_an_answered_call_by_default(tmp_path: Path) -> None:
    """The newcomer's ``sessiond run`` (embedded store, no log options): the call is logged.
    Its metrics carry no ``_created`` series."""
    metrics_port = free_port()
    run = Run(tmp_path, "--metrics-port", str(metrics_port))
    try:
        assert run.call("anyone", "-sn", "uac", "-d", "200") == (1, 0)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            scraped = response.read().decode()
    finally:
        out = run.stop()
    assert 'sessiond_calls_total{outcome="ended"} 1.0' in scraped
    assert "sessiond_transition_seconds_count" in scraped
    assert "_created" not in scraped
    calls = [line for line in out.splitlines() if " sessiond.calls INFO " in line]
    assert len(calls) == 3, out
    start, answer, end = calls
    head = re.search(r"call start (sid=\S+ call_id=(\S+) (.+) -> (.+)) \(UAS\)$", start)
    assert head is not None, start
    assert re.fullmatch(r"1-\d+@127\.0\.0\.1", head.group(2))
    assert "sip:sipp@127.0.0.1" in head.group(3)
    assert f"sip:anyone@127.0.0.1:{run.port}" in head.group(4)
    assert f"call answer {head.group(1)} after " in answer
    tail = re.search(
        rf"call end {re.escape(head.group(1))} code=200 \(remote hangup\) "
        r"duration=(\d+\.\d{3})s$",
        end,
    )
    assert tail is not None, end
    assert float(tail.group(1)) >= 0.2  # sipp held the call 200 ms after the answer


def records(out: str) -> list[dict[str, Any]]:
    """Every line of the output as a JSON object (fails on a line that is not one)."""
    parsed = []
    for line in out.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= set(entry), line
            assert re.fullmatch(ISO, entry["ts"]), line
            parsed.append(entry)
    return parsed


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    yield ns

    async def cleanup() -> None:
        redis = connect(redis_url)
        await delete_namespace(redis, ns)
        await redis.aclose()

    asyncio.run(cleanup())


@pytest.mark.redis
def test_json_lines_from_every_process(
    tmp_path: Path, routes: Path, redis_url: str, namespace: str
) -> None:
    """With ``--redis`` the worker and the media node are child processes: their lines are
    JSON too, and the call lines come from the worker with their fields."""
    options = ["--redis", redis_url, "--namespace", namespace, "--routes", str(routes)]
    run = Run(tmp_path, *options, "--log-format", "json")
    refused = tmp_path / "uac_486.xml"
    refused.write_text(uac_refused(486))
    try:
        assert run.call("anyone", "-sn", "uac", "-d", "200") == (1, 0)
        assert run.call("busy", "-sf", str(refused)) == (1, 0)
    finally:
        out = run.stop()
    entries = records(out)
    loggers = {e["logger"] for e in entries}
    assert {"sessiond", "sessiond.edge", "sessiond.worker", "sessiond.media"} <= loggers
    calls = [e for e in entries if e["logger"] == "sessiond.calls"]
    assert all(e["level"] == "INFO" for e in calls)
    by_sid: dict[str, list[dict[str, Any]]] = {}
    for e in calls:
        by_sid.setdefault(e["sid"], []).append(e)
    assert len(by_sid) == 2, calls
    answered, rejected = sorted(by_sid.values(), key=lambda lines: len(lines), reverse=True)
    assert [e["call"] for e in answered] == ["start", "answer", "end"]
    assert [e["call"] for e in rejected] == ["start", "end"]
    for lines, user, code, reason in (
        (answered, "anyone", 200, "remote hangup"),
        (rejected, "busy", 486, "rejected"),
    ):
        for e in lines:
            assert re.fullmatch(r"\d+-\d+@127\.0\.0\.1", e["call_id"]), e
            assert "sip:sipp@127.0.0.1" in e["from"], e
            assert f"sip:{user}@127.0.0.1:{run.port}" in e["to"], e
            assert e["role"] == "UAS"
            assert e["sid"] in e["msg"], e
            assert e["call_id"] in e["msg"], e
        end = lines[-1]
        assert (end["code"], end["reason"]) == (code, reason), end
        assert isinstance(end["duration"], float)
        assert end["duration"] >= 0.0
    assert answered[-1]["duration"] >= 0.2


@pytest.mark.parametrize("command", ["run", "edge", "worker", "media"])
def test_every_process_takes_log_format(command: str) -> None:
    required = {
        "run": [],
        "edge": ["--redis", "redis://x"],
        "worker": ["--redis", "redis://x"],
        "media": ["--redis", "redis://x", "--rtp-ports", "1-2", "--address", "127.0.0.1"],
    }[command]
    args = build_parser().parse_args([command, *required, "--log-format", "json"])
    assert args.log_format == "json"
    assert build_parser().parse_args([command, *required]).log_format == "text"


def test_json_formatter_keeps_fields_and_tracebacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("sessiond.x").makeRecord(
            "sessiond.x",
            logging.ERROR,
            __file__,
            1,
            "a %s",
            ("b",),
            sys.exc_info(),
            extra={"fields": {"sid": "S", "msg": "not replaced"}},
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "a b"
    assert entry["sid"] == "S"
    assert (entry["level"], entry["logger"]) == ("ERROR", "sessiond.x")
    assert "ValueError: boom" in entry["exc"]
    assert "\n" not in JsonFormatter().format(record)
