"""What the network-namespace drivers (netns_*.py) and their tests share: one private network
namespace (``unshare -n``) where Redis, ``sessiond run`` and baresip run, because baresip binds
wildcard addresses; every process in it bounded in time and stopped at the end.

A driver is a script a test runs as ``unshare -n python netns_X.py WORKDIR ARGS...``
(:func:`run_driver`); its body gets the started Redis (:func:`drive`) and writes what it saw
to WORKDIR/result.json, with ``error`` saying what went wrong; the test judges it. baresip's
configuration (:func:`write_baresip`) is also the one of the test bed's phone
(tests/net/phone.py): G.711, a WAV file as microphone (aufile), what it decodes dumped as
WAV files (sndfile), the menu for ``/dial``.

This module imports only what both a driver (tests/ and tests/e2e/ on its path) and pytest
(tests/ on the path, this file as ``tests.e2e.netns_run``) can import.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis as sync_redis

from sessiond_run import ENV, wait_listening

REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE = "netns"
SIP_PORT = 5090
BARESIP_PORT = 5070
BARESIP_RTP = "10000-10100"  # baresip's rtp_ports
REDIS_SERVER = [
    "redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--daemonize", "no",
]  # fmt: skip
BARESIP_MODULES = ("g711", "aufile", "aubridge", "sndfile", "menu", "account")

BARESIP_CONFIG = """\
poll_method epoll
sip_listen {listen}
call_local_timeout 20
audio_path /usr/share/baresip
audio_player aubridge,nil
audio_alert aubridge,nil
audio_source aufile,{source}
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports {rtp}
rtcp_mux no
jitter_buffer_delay 1-10
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module menu.so
module_app account.so
snd_path {dump}
"""


# -- baresip --------------------------------------------------------------------------------
def baresip_missing(*modules: str) -> str | None:
    """Why baresip (with the usual modules and ``modules``) cannot run here, or None."""
    if shutil.which("baresip") is None:
        return "baresip missing (apt-get install -y baresip-core)"
    for name in (*BARESIP_MODULES, *modules):
        if not Path(f"/usr/lib/baresip/modules/{name}.so").exists():
            return f"baresip module {name}.so missing"
    return None


def write_baresip(
    work: Path,
    listen: str,
    accounts: str,
    source: Path,
    *,
    rtp: str = BARESIP_RTP,
    extra_config: str = "",
) -> tuple[Path, Path]:
    """WORK/baresip/config (listening on ``listen``, ``source`` its microphone) and
    WORK/baresip/accounts (``accounts``: one line a UA); returns that directory and the one
    its sndfile module dumps to (WORK/dump: ``*-dec.wav`` what it heard, one per call)."""
    cfg, dump = work / "baresip", work / "dump"
    cfg.mkdir(exist_ok=True)
    dump.mkdir(exist_ok=True)
    config = BARESIP_CONFIG.format(listen=listen, source=source, dump=dump, rtp=rtp)
    (cfg / "config").write_text(config + extra_config)
    (cfg / "accounts").write_text(accounts)
    return cfg, dump


def baresip_command(cfg: Path, seconds: int, *options: str, dial: str | None = None) -> list[str]:
    """baresip (IPv4) on the configuration in ``cfg``, killed after ``seconds``; it dials
    ``dial`` once started."""
    command = ["timeout", str(seconds), "baresip", "-4", *options, "-f", str(cfg)]
    return command + (["-e", f"/dial {dial}"] if dial is not None else [])


# -- inside the namespace -------------------------------------------------------------------
class Procs:
    """The processes a driver started, each with its output in WORK/<name>.log."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self, name: str, cmd: Sequence[str]) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=self.work)
        self.procs.append(proc)
        return proc

    def redis(self) -> Any:
        """redis-server on 127.0.0.1:6379; a client of it once it answers."""
        self.start("redis", REDIS_SERVER)
        client = sync_redis.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return client
            except sync_redis.ConnectionError:
                time.sleep(0.1)
        client.close()
        raise RuntimeError("redis-server did not start in the namespace")

    def sessiond(self, *args: str, port: int = SIP_PORT) -> subprocess.Popen[bytes]:
        """``sessiond run`` on our Redis and ``ARGS`` (its listeners among them); returns
        once it answers OPTIONS on udp 127.0.0.1:``port``."""
        proc = self.start(
            "sessiond",
            [sys.executable, "-m", "sessiond", "run", "--redis", REDIS_URL]
            + ["--namespace", NAMESPACE, *args],
        )
        wait_listening(port, proc=proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for log in self.logs:
            log.close()


def stop(proc: subprocess.Popen[Any], timeout: float = 8) -> None:
    """SIGTERM, and SIGKILL if it has not exited ``timeout`` s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ctl(*args: str) -> str:
    cmd = [sys.executable, "-m", "sessiond", "ctl", "--redis", REDIS_URL, "--namespace", NAMESPACE]
    out = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=ENV, timeout=15, check=True
    )
    return out.stdout


def established() -> str | None:
    """The sid of an Established session, if there is one."""
    for line in ctl("list", "--state", "Established").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "Established":
            return fields[0]
    return None


def wait_established(peer: subprocess.Popen[bytes], timeout: float = 15) -> str:
    """The sid of the call once it is Established (RuntimeError if it is not within
    ``timeout`` s, or ``peer`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and peer.poll() is None:
        sid = established()
        if sid is not None:
            return sid
        time.sleep(0.2)
    raise RuntimeError("no Established session: the call was not set up, or not answered")


Body = Callable[[Path, Procs, Any, dict[str, Any]], None]


def drive(body: Body, **result: Any) -> None:
    """A driver's main: ``lo`` up, Redis started, ``body(work, procs, redis, result)`` run,
    everything stopped, ``result`` (plus ``error``) written to WORK/result.json. Exit 0
    whether or not it worked: the test judges the result."""
    work = Path(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    procs = Procs(work)
    outcome: dict[str, Any] = {"error": None, **result}
    client = None
    try:
        client = procs.redis()
        body(work, procs, client, outcome)
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        if client is not None:
            client.close()
        procs.stop_all()
    (work / "result.json").write_text(json.dumps(outcome, indent=1, default=str))


# -- in the test ----------------------------------------------------------------------------
def netns_missing(*modules: str) -> str | None:
    """None if baresip (with ``modules``), Redis and ``unshare -n`` work here, else why not."""
    reason = baresip_missing(*modules)
    if reason is not None:
        return reason
    for tool in ("unshare", "ip", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


def run_driver(
    driver: str,
    work: Path,
    *args: str,
    timeout: float,
    logs: Sequence[str] = ("sessiond.log", "baresip.log"),
    tail: int = 1500,
) -> dict[str, Any]:
    """Run tests/e2e/``driver`` in a new network namespace on ``work``; its result.json, with
    ``logs`` the last ``tail`` characters of each of WORK/``logs``. An ``error`` in it fails
    the test here, with those tails."""
    run = subprocess.run(
        ["unshare", "-n", sys.executable, str(Path(__file__).with_name(driver)), str(work), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ENV,
    )
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:])
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    tails = {
        name: (work / name).read_text(errors="replace")[-tail:]
        for name in logs
        if (work / name).exists()
    }
    assert result["error"] is None, (result["error"], tails)
    result["logs"] = tails
    return result
