"""Real processes for end-to-end tests: sessiond processes and sipp, on loopback only.

Every run uses its own key namespace on the test Redis and free ports; every process is
bounded in time and killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis as sync_redis

from ports import free_port
from sessiond.store.history import parse as parse_history
from sessiond_run import ENV, wait_listening


def free_rtp_range(size: int = 200) -> str:
    base = 22000 + (os.getpid() % 200) * 100
    return f"{base}-{base + size}"


class Cluster:
    """sessiond processes started with ``sessiond ...`` in subprocesses."""

    def __init__(self, redis_url: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.namespace = f"e2e{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self._redis: Any = None

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        if not self.procs:  # the tests read what went out after the fact: keep it
            ns = self.namespace
            self.observe(
                f"{ns}:{{edge:edge1}}:commands",
                f"{ns}:{{app}}:events",
                f"{ns}:{{media}}:commands",
                f"{ns}:{{media:m1}}:commands",
                *(f"{ns}:{{p{p}}}:events" for p in range(16)),
            )
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=self.tmp,
        )
        self.procs[name] = proc
        return proc

    def start_split(
        self, *worker_args: str, workers: int = 2, media_args: tuple[str, ...] = ()
    ) -> int:
        """edge (``edge1``), ``workers`` workers (``w0``...) and a media node (``m1``, with
        ``media_args``) as separate processes; returns the edge's UDP port once it answers."""
        port = free_port()
        self.start(
            "edge", "edge", *self.common(), "--listen", f"udp:127.0.0.1:{port}", "--name", "edge1"
        )
        for n in range(workers):
            self.start(f"w{n}", "worker", *self.common(), "--name", f"w{n}", *worker_args)
        self.start(
            "media",
            "media",
            *self.common(),
            "--rtp-ports",
            free_rtp_range(600),
            "--address",
            "127.0.0.1",
            "--name",
            "m1",
            *media_args,
        )
        wait_listening(port)
        return port

    def start_run(
        self,
        *extra: str,
        tcp: bool = False,
        embedded: bool = False,
        rtp_ports: str = "",
        any_answer: bool = False,
    ) -> int:
        """``sessiond run`` (process ``run``) with ``extra`` options, on this cluster's Redis
        (the embedded store with ``embedded``), listening on a free UDP port (and TCP on the
        same number with ``tcp``); returns the port once it answers OPTIONS with 200 (with
        anything, with ``any_answer``: for an edge that refuses this source)."""
        port = free_port()
        listen = ["--listen", f"udp:127.0.0.1:{port}"]
        if tcp:
            listen += ["--listen", f"tcp:127.0.0.1:{port}"]
        store = [] if embedded else self.common()
        rtp = ["--rtp-ports", rtp_ports or free_rtp_range()]
        self.start("run", "run", *store, *listen, *rtp, *extra)
        try:
            wait_listening(port, any_answer=any_answer)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- sessiond run:\n{self.log('run')[-3000:]}") from None
        return port

    def start_media(
        self, proc: str, name: str, rtp_ports: str, *extra: str
    ) -> subprocess.Popen[bytes]:
        """Another media node (process ``proc``, node name ``name``) on loopback."""
        args = ["--rtp-ports", rtp_ports, "--address", "127.0.0.1", "--name", name, *extra]
        return self.start(proc, "media", *self.common(), *args)

    def common(self) -> list[str]:
        return ["--redis", self.redis_url, "--namespace", self.namespace]

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.procs[name].send_signal(sig)
        self.procs[name].wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()

    def redis(self) -> Any:
        if self._redis is None:
            self._redis = sync_redis.Redis.from_url(self.redis_url)
        return self._redis

    def sessions(self) -> list[dict[str, str]]:
        r = self.redis()
        out = []
        for key in r.scan_iter(match=f"{self.namespace}:*:session:*", count=1000):
            raw = r.hgetall(key)
            out.append({k.decode(): v.decode() for k, v in raw.items()})
        return out

    def observe(self, *streams: str) -> None:
        """Keep every entry of ``streams`` for the test to read: a consumer group that reads
        nothing (the workers trim a stream only down to what every group is done with)."""
        for stream in streams:
            with contextlib.suppress(sync_redis.ResponseError):  # BUSYGROUP: observed already
                self.redis().xgroup_create(stream, "observer", id="0", mkstream=True)

    def history(self, sid: str) -> list[dict[str, str]]:
        """The session's history: one dict per transition (from, event, to, worker...)."""
        key = f"{self.namespace}:{{{sid[:10]}}}:history:{sid}"
        return [parse_history(line.decode()) for line in self.redis().lrange(key, 0, -1)]

    def steps(self, sid: str) -> list[tuple[str, str, str]]:
        """(from, event, to) of each transition of the session."""
        return [(h["from"], h["event"], h["to"]) for h in self.history(sid)]

    def cleanup(self) -> None:
        r = self.redis()
        keys = list(r.scan_iter(match=f"{self.namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i : i + 500])
        r.close()
        self._redis = None


def sipp(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run sipp in the foreground (bounded in time); statistics go to the log files."""
    cmd = [
        "sipp",
        "-buff_size",
        "4194304",
        "-nostdin",
        "-trace_err",
        "-trace_stat",
        "-error_file",
        str(tmp / "sipp_errors.log"),
        "-stf",
        str(tmp / "sipp_stat.csv"),
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, check=False
    )


def wait_for(predicate: Any, timeout: float = 10.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def stats(result: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """(successful, failed) from the final screen of a sipp run."""
    return finished(result.stdout)


@contextlib.contextmanager
def background_sipp(tmp: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """sipp running while the test acts on sessiond; killed at the end if still running.
    Read its final screen with ``proc.communicate(timeout=...)``."""
    proc = subprocess.Popen(
        ["sipp", *args, "-buff_size", "4194304", "-nostdin", "-mp", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:  # a test that failed before communicate() left it open
            proc.stdout.close()


def finished(out: str) -> tuple[int, int]:
    """(successful, failed) from a sipp final screen (-1: not on it)."""
    ok = failed = -1
    for line in out.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2].split()[0])
        elif "Failed call" in line:
            failed = int(line.split("|")[2].split()[0])
    return ok, failed
