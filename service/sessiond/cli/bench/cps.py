"""``sessiond bench cps``: the highest call rate ``sessiond run --redis`` sustains with 0
failed calls, driven by sipp's built-in ``uac`` on loopback, all on this one machine.

For each rate (calls/s) sipp places ``rate * seconds`` calls (INVITE, 180, 200 with SDP from
the media node, ACK, then BYE at once). A step passes when every call succeeds and the
achieved rate is within 10% of the target. Reported per step: achieved rate, failed calls,
sessiond CPU per call (user+system time of the sessiond processes, from /proc; also split
by process, with a local Redis server's CPU beside it), and setup latency percentiles
(sipp's response time 1: INVITE sent -> 200 received, per call).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis as sync_redis

from sessiond.cli.bench.command import CPS_RATES
from sessiond.cli.bench.spawn import ONE_SOURCE, free_udp_port, missing_tool, sessiond, stop
from sessiond.store.keys import Keys

DEFAULT_RATES = CPS_RATES


def sipp_uac(port: int, calls: int, rate: int, timeout: int, *extra: str) -> list[str]:
    """The sipp command of the benches: its built-in UAC scenario against ``port``, ``calls``
    calls at ``rate`` per second, from free local ports; ``extra``: more options."""
    return [
        *("sipp", "-sn", "uac", f"127.0.0.1:{port}", "-m", str(calls), "-r", str(rate)),
        *("-d", "0", "-nostdin", "-buff_size", "4194304", "-timeout", str(timeout)),
        *("-p", str(free_udp_port()), "-mp", str(free_udp_port()), *extra),
    ]


def sipp_count(out: str, label: str) -> int:
    """The last count sipp printed on its ``label`` line (``Successful call``...), or 0."""
    count = 0
    for line in out.splitlines():
        if label in line:
            count = int(line.split("|")[2].split()[0])
    return count


def _processes(pid: int) -> Iterator[tuple[int, str, list[str]]]:
    """(pid, role, /proc stat fields) of ``pid`` (``run``: the edge), its live children
    (``worker``, ``media``), and a local ``redis-server`` if there is one."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = rest.split()
        if int(stat.parent.name) == pid:
            role = "edge"
        elif int(fields[1]) == pid:
            role = argv[3].decode() if len(argv) > 3 else "other"  # python -m sessiond ROLE
        elif head.endswith("(redis-server"):
            role = "redis"
        else:
            continue
        yield int(stat.parent.name), role, fields


def _cpu_seconds(pid: int) -> dict[str, float]:
    """User+system CPU by role (the whole Redis server for ``redis``)."""
    total: dict[str, float] = {}
    for _, role, fields in _processes(pid):
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        total[role] = total.get(role, 0.0) + seconds
    return total


def cap_cpu(pid: int | None, fraction: float, name: str = "") -> Path:
    """Put process ``pid`` (None: none yet) in a cgroup of its own allowed ``fraction`` of one
    core (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``); returns the group, for
    :func:`uncap`. Raises OSError when this machine lets us do neither (not root, no cpu
    controller)."""
    period = 100_000
    quota = max(1_000, int(fraction * period))
    name = name or f"sessiond-bench-{pid}"
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # the unified hierarchy
        if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
            (root / "cgroup.subtree_control").write_text("+cpu")
        group = root / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {period}")
    else:
        group = root / "cpu" / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    if pid is not None:
        (group / "cgroup.procs").write_text(str(pid))
    return group


def uncap(group: Path, timeout: float = 10.0) -> None:
    """Remove a group made by :func:`cap_cpu` once its process has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def process_cpu(pid: int) -> float:
    """User+system CPU of ``pid`` and its live children."""
    return sum(v for role, v in _cpu_seconds(pid).items() if role != "redis")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _wait_sip(port: int, timeout: float = 20.0) -> None:
    probe = (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-bench\r\n"
        "From: <sip:bench@127.0.0.1>;tag=b\r\nTo: <sip:127.0.0.1>\r\nCall-ID: bench-probe\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        data = probe.format(p=s.getsockname()[1]).encode()
        while time.monotonic() < deadline:
            s.sendto(data, ("127.0.0.1", port))
            try:
                if s.recv(2048).startswith(b"SIP/2.0 200"):
                    return
            except OSError:
                continue
    raise TimeoutError("sessiond run did not come up")


def _wait_ready(redis_url: str, namespace: str, workers: int, timeout: float = 30.0) -> None:
    """Wait until the media node runs and the workers share every partition between them:
    the edge answers OPTIONS itself, so ``_wait_sip`` alone would start the first step while
    workers still import."""
    keys = Keys(namespace)
    client = sync_redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            now = time.time()
            live = client.zcount(keys.processes("worker"), now - 1.0, "+inf")
            media = client.zcount(keys.processes("media"), now - 5.0, "+inf")
            owners = client.mget(keys.leases())
            balanced = None not in owners and len(set(owners)) == workers
            if live >= workers and media >= 1 and balanced:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError("the workers or the media node of sessiond run did not come up")


def _sipp_step(port: int, rate: int, seconds: float, work: Path) -> dict[str, float]:
    for old in work.glob("*"):
        old.unlink()
    calls = int(rate * seconds)
    extra = ["-l", str(max(rate * 4, 100)), "-trace_rtt", "-rtt_freq", "50", "-timeout_error"]
    cmd = sipp_uac(port, calls, rate, int(seconds * 3 + 30), *extra)
    started = time.monotonic()
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=work, check=False, timeout=seconds * 3 + 60
    ).stdout
    elapsed = time.monotonic() - started
    ok, failed = sipp_count(out, "Successful call"), sipp_count(out, "Failed call")
    rtts: list[float] = []
    for rtt in work.glob("*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                rtts.append(float(parts[1]))
    return {
        "calls": calls,
        "ok": ok,
        "failed": calls - ok if failed == 0 else failed,
        "elapsed": elapsed,
        "p50": _percentile(rtts, 0.5),
        "p90": _percentile(rtts, 0.9),
        "p99": _percentile(rtts, 0.99),
    }


def _run_workers(
    redis_url: str, workers: int, rates: list[int], seconds: float, worker_cpu: float | None
) -> int:
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    port = free_udp_port()
    work = Path(tempfile.mkdtemp(prefix="sessiond-cps-"))
    args = ["run", "--redis", redis_url, "--namespace", namespace, "--workers", str(workers)]
    args += ["--listen", f"udp:127.0.0.1:{port}", "--rtp-ports", "30000-39999"]
    proc = sessiond([*args, "--rtp-timeout", "0", *ONE_SOURCE], work.parent / f"{work.name}.log")
    best = 0
    groups: list[Path] = []
    try:
        _wait_sip(port)
        _wait_ready(redis_url, namespace, workers)
        print(f"\nsessiond run --workers {workers} (pid {proc.pid}), {seconds:g} s per step")
        if worker_cpu is not None:
            for child, role, _ in _processes(proc.pid):
                if role == "worker":
                    groups.append(cap_cpu(child, worker_cpu))
            print(f"each worker process capped at {worker_cpu:g} of a core ({len(groups)} capped)")
        print(
            f"{'target':>7} {'achieved':>9} {'failed':>7} {'cpu/call':>9} "
            f"{'p50':>6} {'p90':>6} {'p99':>6}   (setup latency, ms)   "
            "CPU ms/call: edge worker media redis"
        )
        for rate in rates:
            cpu0 = _cpu_seconds(proc.pid)
            step = _sipp_step(port, rate, seconds, work)
            cpu1 = _cpu_seconds(proc.pid)
            used = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
            achieved = step["ok"] / step["elapsed"] if step["elapsed"] else 0.0
            calls = max(1, step["ok"])
            ours = sum(v for role, v in used.items() if role != "redis")
            split = " ".join(
                f"{1000 * used.get(role, 0.0) / calls:.2f}"
                for role in ("edge", "worker", "media", "redis")
            )
            print(
                f"{rate:7d} {achieved:9.1f} {int(step['failed']):7d} {1000 * ours / calls:7.2f}ms "
                f"{step['p50']:6.0f} {step['p90']:6.0f} {step['p99']:6.0f}"
                f"                         {split}"
            )
            if step["failed"] or step["ok"] < step["calls"] or achieved < 0.9 * rate:
                break
            best = rate
            time.sleep(1.0)
    finally:
        stop(proc)
        for group in groups:
            with contextlib.suppress(OSError):
                uncap(group)
        shutil.rmtree(work, ignore_errors=True)
        client = sync_redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()
    print(f"highest rate with 0 failed calls: {best} calls/s ({workers} worker(s))")
    return best


def cps(
    redis_url: str,
    workers: list[int],
    rates: list[int],
    seconds: float,
    worker_cpu: float | None = None,
) -> int:
    """``worker_cpu``: cap each worker process at that fraction of a core, so the workers are
    the bottleneck and what adding one brings shows even on a machine this small."""
    if missing_tool("cps", {"sipp": "sip-tester"}):
        return 2
    if worker_cpu is not None:
        try:
            uncap(cap_cpu(None, 1.0, f"sessiond-bench-probe-{os.getpid()}"))  # can we?
        except OSError as exc:
            print(f"sessiond bench cps: cannot cap worker CPU here: {exc}", file=sys.stderr)
            return 2
    results = {n: _run_workers(redis_url, n, rates, seconds, worker_cpu) for n in workers}
    print("\nsummary: " + ", ".join(f"{n} worker(s): {r} calls/s" for n, r in results.items()))
    first, base = next(iter(results.items()))
    for n, best in list(results.items())[1:]:
        if base:
            print(f"{n} workers against {first}: {best / base:.2f}x")
    return 0
