"""Run inside a private network namespace (``unshare -n``): Redis, ``sessiond run
--registrar 127.0.0.1`` and baresip registering alice over UDP and bob over TCP (both
answering calls by themselves, ``answermode=auto``), then a sipp caller dialling
``sip:alice@127.0.0.1`` and ``sip:bob@127.0.0.1``: each call reaches baresip through its
binding (bob's over the TCP connection baresip opened), is answered, and the caller hangs up.

    unshare -n python netns_baresip_called.py WORKDIR

Writes WORKDIR/result.json (``calls``: user -> sipp's exit status, ``error``); every process
is bounded in time and killed at the end. Exit 0 whether or not it worked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import redis as sync_redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for, wait_listening  # noqa: E402
from netns_baresip import Procs  # noqa: E402
from netns_baresip_register import (  # noqa: E402
    ACCOUNTS,
    BARESIP_CONFIG,
    REDIS_URL,
    SIP_PORT,
    bindings,
    ctl,
)

from sipp_scenarios import caller  # noqa: E402

NAMESPACE = "netns"


def main(work: Path) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    procs = Procs(work)
    result: dict[str, Any] = {"error": None, "calls": {}}
    client = None
    try:
        procs.start(
            "redis",
            ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no"],
        )
        client = sync_redis.Redis.from_url(REDIS_URL)

        def redis_up() -> bool:
            try:
                return bool(client.ping())
            except sync_redis.ConnectionError:
                return False

        if not wait_for(redis_up, timeout=10):
            raise RuntimeError("redis-server did not start in the namespace")
        for user, (_, password) in ACCOUNTS.items():
            ctl("user", "add", f"{user}@127.0.0.1", password)
        procs.start(
            "sessiond",
            [sys.executable, "-m", "sessiond", "run", "--redis", REDIS_URL]
            + ["--namespace", NAMESPACE, "--registrar", "127.0.0.1"]
            + ["--listen", f"udp:127.0.0.1:{SIP_PORT}", "--listen", f"tcp:127.0.0.1:{SIP_PORT}"]
            + ["--rtp-ports", "20000-20100"],
        )
        wait_listening(SIP_PORT)
        cfg = work / "baresip"
        cfg.mkdir(exist_ok=True)
        (cfg / "config").write_text(BARESIP_CONFIG)
        (cfg / "accounts").write_text(
            "".join(
                f"<sip:{user}@127.0.0.1:{SIP_PORT};transport={transport}>;"
                f"auth_pass={password};regint=120;answermode=auto\n"
                for user, (transport, password) in ACCOUNTS.items()
            )
        )
        procs.start(
            "baresip", ["timeout", "60", "baresip", "-4", "-n", "127.0.0.1", "-f", str(cfg)]
        )
        if not wait_for(lambda: all(bindings(client).values()), timeout=30, every=0.2):
            raise RuntimeError("baresip did not register both accounts")
        result["bindings"] = bindings(client)
        for user in ACCOUNTS:
            scenario = caller("hangs_up").replace('"180"/>', '"180" optional="true"/>')
            scenario = scenario.replace("[service]@[remote_ip]:[remote_port]", f"{user}@127.0.0.1")
            path = work / f"call-{user}.xml"
            path.write_text(scenario)
            run = subprocess.run(
                ["sipp", f"127.0.0.1:{SIP_PORT}", "-sf", str(path), "-m", "1", "-i", "127.0.0.1"]
                + ["-p", "5100", "-mp", "6100", "-timeout", "20", "-nostdin"]
                + ["-trace_err", "-error_file", str(work / f"sipp-{user}.err")],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                cwd=work,
            )
            result["calls"][user] = run.returncode
            (work / f"sipp-{user}.out").write_text(run.stdout[-3000:])
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        if client is not None:
            client.close()
        procs.stop_all()
    return result


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    outcome = main(workdir)
    (workdir / "result.json").write_text(json.dumps(outcome, indent=1, default=str))
