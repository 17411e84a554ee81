"""Usage and environment errors of the real CLI: one line on stderr naming the problem and
what to do, a non-zero exit, no traceback and no hang.

Every case runs ``python -m sessiond ...`` from this worktree in a subprocess with a bounded
wait. Busy addresses are held by a socket of the test; an unreachable Redis is a loopback
port nothing listens on (or a listener that never answers).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as sync_redis

from ports import free_port
from sessiond.store import Keys, new_sid

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}
BAD_SCHEME = "http://127.0.0.1:6379"


def rtp_range() -> str:
    base = 26000 + (os.getpid() % 100) * 40
    return f"{base}-{base + 39}"


def cli(
    *args: str, timeout: float = 40, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test with TimeoutExpired
        env=env or ENV,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single stderr line of a refused command; asserts the exit and the words in it."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@contextmanager
def held(kind: int) -> Iterator[int]:
    """A loopback port held by this test (a UDP socket, or a listening TCP socket)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        yield int(s.getsockname()[1])


def unreachable_redis() -> str:
    return f"redis://127.0.0.1:{free_port(socket.SOCK_STREAM)}/0"


# -- busy or unbindable addresses ---------------------------------------------------------


def test_run_on_a_busy_sip_port_says_so_and_exits() -> None:
    """Before: the edge failed inside a gather, the workers and media node ran on and the
    process hung (printing '1 worker(s) ... reads partitions' as if it were up)."""
    with held(socket.SOCK_DGRAM) as port:
        result = cli("run", "--listen", f"udp:127.0.0.1:{port}", "--store-port", "0")
    one_line_error(result, "--listen", f"127.0.0.1:{port}", "in use")


def test_run_on_a_busy_tcp_port() -> None:
    with held(socket.SOCK_STREAM) as port:
        result = cli("run", "--listen", f"tcp:127.0.0.1:{port}", "--store-port", "0")
    one_line_error(result, "--listen", "tcp", "in use")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_run_whose_listener_fails_after_the_check_stops(transport: str) -> None:
    """The same address twice passes the check (each is bound alone) and fails when the edge
    binds the second: the workers and media node already started are stopped and the
    process ends with the reason (before: it hung until killed, then a traceback)."""
    port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    listen = f"{transport}:127.0.0.1:{port}"
    result = cli("run", "--store-port", "0", "--listen", listen, "--listen", listen)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sessiond run: --listen: "), result.stderr
    assert "in use" in last


def test_edge_on_a_busy_sip_port(redis_url: str) -> None:
    with held(socket.SOCK_DGRAM) as port:
        result = cli("edge", "--redis", redis_url, "--listen", f"udp:127.0.0.1:{port}")
    one_line_error(result, "sessiond edge", "--listen", "in use")


def test_edge_on_an_address_not_of_this_machine(redis_url: str) -> None:
    result = cli("edge", "--redis", redis_url, "--listen", "udp:192.0.2.1:5060")
    one_line_error(result, "--listen", "not on this machine")


def test_media_on_an_address_not_of_this_machine(redis_url: str) -> None:
    args = ["--rtp-ports", rtp_range(), "--address", "192.0.2.1"]
    one_line_error(cli("media", "--redis", redis_url, *args), "sessiond media", "--address")


def test_run_on_an_rtp_address_not_of_this_machine() -> None:
    result = cli("run", "--listen", "udp:127.0.0.1:0", "--address", "192.0.2.1")
    one_line_error(result, "--address", "not on this machine")


@pytest.mark.parametrize("command", ["run", "edge", "worker", "media"])
def test_busy_metrics_port(command: str, redis_url: str) -> None:
    extra = {
        "run": ["--listen", "udp:127.0.0.1:0", "--store-port", "0"],
        "edge": ["--redis", redis_url, "--listen", "udp:127.0.0.1:0"],
        "worker": ["--redis", redis_url],
        "media": ["--redis", redis_url, "--rtp-ports", rtp_range(), "--address", "127.0.0.1"],
    }[command]
    with held(socket.SOCK_STREAM) as port:
        result = cli(command, *extra, "--metrics-port", str(port))
    one_line_error(result, f"sessiond {command}", "--metrics-port", "in use")


def test_run_on_a_busy_store_port() -> None:
    with held(socket.SOCK_STREAM) as port:
        result = cli("run", "--listen", "udp:127.0.0.1:0", "--store-port", str(port))
    one_line_error(result, "--store-port", str(port))


# -- Redis: a wrong URL, an unreachable server --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--listen", "udp:127.0.0.1:0"],
        ["edge", "--listen", "udp:127.0.0.1:0"],
        ["worker"],
        ["media", "--rtp-ports", "20000-20100", "--address", "127.0.0.1"],
        ["ctl", "list"],
    ],
    ids=lambda a: a[0],
)
@pytest.mark.parametrize("url", [BAD_SCHEME, "localhost:6379", "redis://127.0.0.1:notaport/0"])
def test_a_url_that_is_not_redis(args: list[str], url: str) -> None:
    command, *rest = args
    result = cli(command, "--redis", url, *rest)
    one_line_error(result, f"sessiond {command}", "--redis", url)
    assert result.returncode == 2


def test_ctl_with_redis_down_fails_fast() -> None:
    started = time.monotonic()
    result = cli("ctl", "--redis", unreachable_redis(), "list", timeout=30)
    one_line_error(result, "sessiond ctl", "cannot use Redis", "check --redis")
    assert time.monotonic() - started < 30


def test_ctl_with_a_redis_that_never_answers_gives_up() -> None:
    """A server that accepts the connection and never replies: ctl's reply timeout ends it
    (before: no read timeout, it waited forever)."""
    with held(socket.SOCK_STREAM) as port:
        result = cli("ctl", "--redis", f"redis://127.0.0.1:{port}/0", "workers", timeout=40)
    one_line_error(result, "sessiond ctl", "cannot use Redis", "Timeout")


def test_ctl_without_redis_and_no_local_run(tmp_path: Path) -> None:
    env = {**ENV, "XDG_RUNTIME_DIR": str(tmp_path)}
    result = cli("ctl", "list", env=env)
    one_line_error(result, "sessiond ctl", "no local `sessiond run`", "--redis")


@pytest.mark.parametrize(
    ("args", "loggers"),
    [
        (["worker"], ["worker"]),
        (["edge", "--listen", "udp:127.0.0.1:0"], ["edge"]),
        (["media", "--rtp-ports", "20000-20100", "--address", "127.0.0.1"], ["media"]),
        # with --redis, run's workers and media node are child processes (same output)
        (["run", "--listen", "udp:127.0.0.1:0"], ["edge", "worker", "media"]),
    ],
    ids=lambda v: (
        v[0] if isinstance(v, list) and v[0] in ("run", "edge", "worker", "media") else ""
    ),
)
def test_services_keep_retrying_and_say_so(
    args: list[str], loggers: list[str], tmp_path: Path
) -> None:
    """A service whose Redis is down keeps retrying, says so once per backoff step (the
    delay doubles), and still stops on SIGTERM (before: media ignored it while retrying)."""
    command, *rest = args
    log = tmp_path / "out.log"

    def delays() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {name: [] for name in loggers}
        for line in log.read_text().splitlines():
            fields = line.split()
            if "retrying in" in line and len(fields) > 2 and fields[2].startswith("sessiond."):
                found.setdefault(fields[2].removeprefix("sessiond."), []).append(fields[-1])
        return found

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond", command, "--redis", unreachable_redis(), *rest],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and min(len(d) for d in delays().values()) < 3:
                time.sleep(0.2)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=45)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "redis unavailable" in text
    for name, steps in delays().items():  # one line per backoff step
        assert steps[:3] == ["0.1s", "0.2s", "0.4s"], (name, text)


# -- session ids and call targets -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["show", "nonsense"],
        ["hangup", "../../etc"],
        ["dtmf", "abc", "1"],
        ["hold", "3fa9c01b22_5d0e6a1f7c88"],
        ["transfer", "x", "sip:bob@127.0.0.1"],
    ],
    ids=lambda a: a[0],
)
def test_ctl_refuses_a_malformed_session_id(args: list[str]) -> None:
    """Refused before connecting (the Redis given is not even there)."""
    result = cli("ctl", "--redis", unreachable_redis(), *args)
    one_line_error(result, "sessiond ctl", "is not a session id", "ctl list")
    assert result.returncode == 2


@pytest.mark.parametrize("target", ["notauri", "bob@127.0.0.1", "sip:", "http://x"])
def test_ctl_call_refuses_a_bad_target_before_sending(target: str, redis_url: str) -> None:
    """Before: with a live edge, ctl published the MakeCall, printed a session id and exited
    0 although the worker then refused it."""
    keys = Keys(f"ce{uuid.uuid4().hex[:8]}")
    r = sync_redis.Redis.from_url(redis_url)
    try:
        r.set(keys.heartbeat("edge", "e1"), "1", ex=60)  # a live edge to call through
        r.zadd(keys.processes("edge"), {"e1": time.time()})
        result = cli("ctl", "--redis", redis_url, "--namespace", keys.ns, "call", target)
        one_line_error(result, "sessiond ctl", "is not a SIP URI", "sip:")
        assert result.stdout == ""
        streams = [keys.events(p) for p in range(keys.partitions)]
        assert not any(r.exists(s) for s in streams)  # nothing was sent
    finally:
        r.delete(keys.heartbeat("edge", "e1"), keys.processes("edge"))
        r.close()


def test_ctl_transfer_refuses_a_bad_target() -> None:
    sid = new_sid("x@h")
    result = cli("ctl", "--redis", unreachable_redis(), "transfer", sid, "notauri")
    one_line_error(result, "target", "is not a SIP URI")


# -- impossible values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--workers", "0"], ["--workers", "at least 1"]),
        (["run", "--workers", "-2"], ["--workers"]),
        (["run", "--partitions", "0"], ["--partitions"]),
        (["run", "--metrics-port", "70000"], ["--metrics-port", "0-65535"]),
        (["run", "--store-port", "65536"], ["--store-port"]),
        (["run", "--rtp-timeout", "-1"], ["--rtp-timeout"]),
        (["run", "--srtp", "always"], ["--srtp", "off", "offer", "require"]),
        (
            ["media", "--redis", "x", "--rtp-ports", "1-2", "--address", "a", "--srtp", "yes"],
            ["--srtp", "require"],
        ),
        (["run", "--rate-burst", "0"], ["--rate-burst"]),
        (["run", "--max-connections", "many"], ["--max-connections", "'many'"]),
        (["run", "--listen", "udp:127.0.0.1:70000"], ["--listen", "70000"]),
        (["run", "--rtp-ports", "3"], ["port range", "20000-20999"]),
        (["worker", "--redis", "redis://127.0.0.1:1/0", "--concurrency", "0"], ["--concurrency"]),
        (["edge", "--redis", "redis://127.0.0.1:1/0", "--rate-limit", "-5"], ["--rate-limit"]),
        (["media", "--redis", "x", "--rtp-ports", "9-8", "--address", "127.0.0.1"], ["rtp"]),
        (
            ["media", "--redis", "x", "--rtp-ports", "1-2", "--address", "a", "--partitions", "-1"],
            ["--partitions"],
        ),
        (["ctl", "--partitions", "0", "list"], ["--partitions"]),
        (["run", "--registrar", "bad domain!"], ["--registrar", "DOMAIN[,DOMAIN]"]),
        (["run", "--registrar", ","], ["--registrar"]),
        (
            ["run", "--registrar", "example.com", "--registrar-min-expires", "0"],
            ["--registrar-min-expires"],
        ),
        (
            ["edge", "--redis", "redis://127.0.0.1:1/0", "--registrar", "a.b"]
            + ["--registrar-min-expires", "600", "--registrar-max-expires", "60"],
            ["--registrar-max-expires"],
        ),
        (
            ["run", "--registrar", "example.com", "--registrar-algorithms", "MD5,SHA-1"],
            ["--registrar-algorithms", "MD5, SHA-256"],
        ),
        (
            ["run", "--registrar", "example.com", "--registrar-max-contacts", "0"],
            ["--registrar-max-contacts"],
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_impossible_values(args: list[str], words: list[str]) -> None:
    result = cli(*args)
    one_line_error(result, *words)
    assert result.returncode == 2


# -- sessiond bench: each bench takes its own options only --------------------------------


@pytest.mark.parametrize(
    ("args", "flag", "owner"),
    [
        (["bench", "cps", "--members", "3"], "--members", "conference"),
        (["bench", "memory", "--systems", "x"], "--systems", "peers"),
        (["bench", "memory", "--seconds", "3"], "--seconds", "cps"),
        (["bench", "media", "--redis", "redis://127.0.0.1:1/0"], "--redis", "transitions"),
        (["bench", "register", "--workers", "2"], "--workers", "cps"),
        (["bench", "idle", "--install"], "--install", "peers"),
        (["bench", "transitions", "--rates", "10"], "--rates", "register"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_bench_refuses_an_option_of_another_bench(args: list[str], flag: str, owner: str) -> None:
    """Before: one namespace for every bench, so ``bench cps --members 3`` ran cps and
    ignored --members. Refused before anything starts (the Redis given is not there)."""
    result = cli(*args)
    line = one_line_error(result, f"sessiond bench {args[1]}: unrecognized arguments: {flag}")
    assert f"{flag} is an option of bench " in line
    assert owner in line.split(f"{flag} is an option of bench ", 1)[1]
    assert f"see sessiond bench {args[1]} --help" in line
    assert result.returncode == 2
    assert result.stdout == ""


def test_a_bench_refuses_an_unknown_option() -> None:
    result = cli("bench", "mixer", "--bogus")
    line = one_line_error(result, "sessiond bench mixer: unrecognized arguments: --bogus")
    assert "is an option of" not in line
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("bench", "flags"),
    [
        ("transitions", {"--redis", "--seconds", "--batch"}),
        ("cps", {"--redis", "--seconds", "--rates", "--workers", "--worker-cpu"}),
        ("sip", {"--redis", "--seconds", "--calls", "--rate"}),
        ("media", {"--seconds"}),
        ("mixer", {"--seconds"}),
        ("conference", {"--seconds", "--members", "--talkers"}),
        (
            "peers",
            {"--seconds", "--rates", "--systems", "--rounds", "--hold", "--install", "--idle-rtp"},
        ),
        ("memory", {"--calls", "--rate", "--idle-rtp", "--overflow"}),
        ("idle", {"--calls", "--seconds", "--rounds", "--idle-rtp"}),
        ("register", {"--seconds", "--rates"}),
    ],
)
def test_bench_help_lists_only_its_own_options(bench: str, flags: set[str]) -> None:
    result = cli("bench", bench, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: sessiond bench {bench} "), result.stdout
    options = result.stdout.split("\noptions:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", options.strip("\n"))
    listed = {re.findall(r"--[a-z-]+", entry)[0] for entry in entries}
    assert listed == {"--help"} | flags, result.stdout
    for entry in entries:  # every option says what it is for, beside its name and value
        words = [w for w in entry.split() if not re.fullmatch(r"-h,|--?[a-z-]+|[A-Z\[\],.]+", w)]
        assert words, entry


def test_bench_help_lists_the_benches_not_their_options() -> None:
    result = cli("bench", "--help")
    assert result.returncode == 0, result.stderr
    for bench in ("transitions", "cps", "peers", "memory", "idle", "register"):
        assert re.search(rf"^    {bench}\b", result.stdout, re.MULTILINE), result.stdout
    assert "--members" not in result.stdout
    assert "--systems" not in result.stdout


def test_bench_without_a_name_is_one_line() -> None:
    result = cli("bench")
    one_line_error(result, "sessiond bench", "BENCH", "sessiond bench --help")
    assert result.returncode == 2
