"""``sessiond bench sip``: the SIP parser's parse+serialize rate for a realistic INVITE with
SDP, and the CPU each process spends per call (edge, worker, media as separate processes on
a real Redis), with sipp's ``uac`` placing calls at a fixed rate on loopback."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis as sync_redis

from sessiond.cli.bench.cps import _wait_sip, process_cpu, sipp_count, sipp_uac
from sessiond.cli.bench.spawn import ONE_SOURCE, free_udp_port, sessiond, stop
from sessiond.sip.bench import bench_parse


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return sessiond(args, log)


def per_call_cpu(redis_url: str, calls: int, rate: int) -> dict[str, float]:
    ns = f"benchsip{uuid.uuid4().hex[:6]}"
    common = ["--redis", redis_url, "--namespace", ns]
    port = free_udp_port()
    work = Path(tempfile.mkdtemp(prefix="sessiond-bench-sip-"))
    procs = {
        "edge": _start(
            ["edge", *common, "--listen", f"udp:127.0.0.1:{port}", *ONE_SOURCE], work / "edge.log"
        ),
        "worker": _start(["worker", *common, "--answer", "auto"], work / "worker.log"),
        "media": _start(
            [
                "media",
                *common,
                "--rtp-ports",
                "40000-49999",
                "--address",
                "127.0.0.1",
                "--rtp-timeout",
                "0",
            ],
            work / "media.log",
        ),
    }
    try:
        _wait_sip(port)
        before = {name: process_cpu(p.pid) for name, p in procs.items()}
        sipp = subprocess.run(
            sipp_uac(port, calls, rate, calls // rate + 60),
            capture_output=True,
            text=True,
            cwd=work,
            check=False,
            timeout=calls // rate + 90,
        )
        time.sleep(1.0)
        after = {name: process_cpu(p.pid) for name, p in procs.items()}
        ok = sipp_count(sipp.stdout, "Successful call")
        result = {f"{n}_ms": 1000 * (after[n] - before[n]) / max(1, ok) for n in procs}
        result["calls_ok"] = ok
        return result
    finally:
        stop(*procs.values())
        client = sync_redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


def bench_sip(redis_url: str, seconds: float, calls: int, rate: int) -> int:
    parse = bench_parse(seconds)
    print(
        f"parse+serialize of an {int(parse['bytes'])}-byte INVITE with SDP: "
        f"{parse['messages_per_s']:,.0f} msg/s (best round), "
        f"{parse['mean_messages_per_s']:,.0f} msg/s (whole run)   goal >= 50,000"
    )
    cpu = per_call_cpu(redis_url, calls, rate)
    print(
        f"{int(cpu['calls_ok'])}/{calls} calls at {rate}/s through separate processes; "
        f"CPU per call: edge {cpu['edge_ms']:.2f} ms, worker {cpu['worker_ms']:.2f} ms, "
        f"media {cpu['media_ms']:.2f} ms"
    )
    return 0 if cpu["calls_ok"] == calls else 1
