"""Run inside a private network namespace (``unshare -n``): Redis, ``sessiond run
--registrar 127.0.0.1`` and baresip registering two accounts to it, one over UDP and one over
TCP (the shared start-up: netns_run.py).

    unshare -n python netns_baresip_register.py WORKDIR

The accounts are made with ``sessiond ctl user add``; baresip answers the digest challenge,
registers and refreshes; once both bindings are in Redis baresip is stopped (SIGTERM: it
unregisters). Writes WORKDIR/result.json (``bindings`` as stored, ``after_stop`` what is left,
``registrations`` the ``ctl registrations`` output, ``error``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for  # noqa: E402
from media_checks import write_tone_wav  # noqa: E402
from netns_run import (  # noqa: E402
    BARESIP_PORT,
    NAMESPACE,
    SIP_PORT,
    Procs,
    baresip_command,
    ctl,
    drive,
    stop,
    write_baresip,
)

ACCOUNTS = {"alice": ("udp", "s3cret"), "bob": ("tcp", "tcp-pass")}


def bindings(client: Any) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for user in ACCOUNTS:
        raw = client.hgetall(f"{NAMESPACE}:location:{user}@127.0.0.1")
        out[user] = [json.loads(v) for v in raw.values()]
    return out


def register(work: Path, procs: Procs, client: Any, answermode: str = "") -> Any:
    """The accounts made, ``sessiond run --registrar`` started (UDP and TCP), baresip
    registering both accounts (``answermode``: the accounts' extra parameters); baresip, once
    both are bound (RuntimeError if they are not)."""
    for user, (_, password) in ACCOUNTS.items():
        ctl("user", "add", f"{user}@127.0.0.1", password)
    procs.sessiond(
        *("--registrar", "127.0.0.1", "--rtp-ports", "20000-20100"),
        *("--listen", f"udp:127.0.0.1:{SIP_PORT}", "--listen", f"tcp:127.0.0.1:{SIP_PORT}"),
    )
    source = work / "mic.wav"
    write_tone_wav(source, 880.0, 30.0)
    accounts = "".join(
        f"<sip:{user}@127.0.0.1:{SIP_PORT};transport={transport}>;"
        f"auth_pass={password};regint=120{answermode}\n"
        for user, (transport, password) in ACCOUNTS.items()
    )
    cfg, _ = write_baresip(work, f"127.0.0.1:{BARESIP_PORT}", accounts, source)
    baresip = procs.start("baresip", baresip_command(cfg, 60, "-n", "127.0.0.1"))
    if not wait_for(lambda: all(bindings(client).values()), timeout=30, every=0.2):
        raise RuntimeError("baresip did not register both accounts")
    return baresip


def register_and_stop(work: Path, procs: Procs, client: Any, result: dict[str, Any]) -> None:
    baresip = register(work, procs, client)
    result["bindings"] = bindings(client)
    result["registrations"] = ctl("registrations")
    stop(baresip)
    # baresip 1.0 sends its unregisters without credentials and often quits before the
    # challenge comes back (seen on the wire): what is left must go away by itself
    wait_for(lambda: not any(bindings(client).values()), timeout=3, every=0.2)
    result["after_stop"] = bindings(client)
    result["ttl"] = {u: client.ttl(f"{NAMESPACE}:location:{u}@127.0.0.1") for u in ACCOUNTS}


if __name__ == "__main__":
    drive(register_and_stop)
