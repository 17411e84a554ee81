"""Run inside a private network namespace (``unshare -n``): Redis, ``sessiond run
--registrar 127.0.0.1`` and baresip registering two accounts to it, one over UDP and one over
TCP (baresip binds wildcard addresses, so everything lives in a namespace of its own).

    unshare -n python netns_baresip_register.py WORKDIR

The accounts are made with ``sessiond ctl user add``; baresip answers the digest challenge,
registers and refreshes; once both bindings are in Redis baresip is stopped (SIGTERM: it
unregisters). Writes WORKDIR/result.json (``bindings`` as stored, ``after_stop`` what is left,
``registrations`` the ``ctl registrations`` output, ``error``); every process is bounded in
time and killed at the end. Exit 0 whether or not it worked: the test judges the result.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import redis as sync_redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for, wait_listening  # noqa: E402
from netns_baresip import ENV, Procs  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE = "netns"
SIP_PORT = 5090
ACCOUNTS = {"alice": ("udp", "s3cret"), "bob": ("tcp", "tcp-pass")}

BARESIP_CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:5070
audio_player aubridge,nil
audio_source aubridge,nil
module_path /usr/lib/baresip/modules
module g711.so
module aubridge.so
module menu.so
module_app account.so
"""


def ctl(*args: str) -> str:
    cmd = [sys.executable, "-m", "sessiond", "ctl", "--redis", REDIS_URL, "--namespace", NAMESPACE]
    out = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=ENV, timeout=15, check=True
    )
    return out.stdout


def bindings(client: Any) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for user in ACCOUNTS:
        raw = client.hgetall(f"{NAMESPACE}:location:{user}@127.0.0.1")
        out[user] = [json.loads(v) for v in raw.values()]
    return out


def main(work: Path) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    procs = Procs(work)
    result: dict[str, Any] = {"error": None}
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
                f"auth_pass={password};regint=120\n"
                for user, (transport, password) in ACCOUNTS.items()
            )
        )
        baresip = procs.start(
            "baresip", ["timeout", "60", "baresip", "-4", "-n", "127.0.0.1", "-f", str(cfg)]
        )
        both = wait_for(lambda: all(bindings(client).values()), timeout=30, every=0.2)
        result["bindings"] = bindings(client)
        result["registrations"] = ctl("registrations")
        if not both:
            raise RuntimeError("baresip did not register both accounts")
        baresip.send_signal(signal.SIGTERM)
        try:
            baresip.wait(timeout=10)
        except subprocess.TimeoutExpired:
            baresip.kill()
            baresip.wait()
        # baresip 1.0 sends its unregisters without credentials and often quits before the
        # challenge comes back (seen on the wire): what is left must go away by itself
        wait_for(lambda: not any(bindings(client).values()), timeout=3, every=0.2)
        result["after_stop"] = bindings(client)
        result["ttl"] = {u: client.ttl(f"{NAMESPACE}:location:{u}@127.0.0.1") for u in ACCOUNTS}
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
