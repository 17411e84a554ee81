"""Two softphones of different makes register to sessiond's registrar and call each other by
user name, over the multi-host test bed (tests/net/bed.py):

* alice is baresip on the home LAN (192.168.1.2), behind the masquerading router;
* bob is linphone (linphonec, tests/net/linphone.py) on the outside host (198.51.100.10);
* sessiond (``run --registrar example.test``) is on the public host behind the 1:1 NAT,
  advertising 198.51.100.7; both phones use it as their outbound proxy and registrar
  (``example.test`` resolves nowhere: the domain is only in the URIs).

The accounts are made with ``sessiond ctl user add``; both phones answer the digest challenge
(their bindings are read from Redis). Then, in the order a user would meet it:

1. bob calls ``sip:alice@example.test``: sessiond finds alice's binding and rings her phone
   through her router's binding; baresip answers by itself. linphone plays 440 Hz, baresip
   880 Hz; each records what it hears. bob hangs up.
2. alice calls ``sip:bob@example.test``; linphone answers by itself; the same tones; alice
   hangs up. Each phone's recordings of both calls hold the other phone's tone (Goertzel
   filters, tests/e2e/media_checks.py).
3. bob unregisters (linphonec ``unregister``): his binding leaves Redis and ``ctl
   registrations``; alice's call to him then gets 480.
4. alice's phone is killed (SIGKILL, no unregister) with a 10 s registration: her binding
   expires by itself (the key's TTL) and she is gone from ``ctl registrations``.
5. a second linphone tries bob's account with a wrong password: refused (403 after the
   challenge), never bound, and counted (``sessiond_registrar_auth_failures_total
   {reason="wrong-password"}`` goes up).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.media_checks import write_tone_wav
from tests.e2e.netns_run import stop
from tests.net.bed import PUBLIC, ROUTER_WAN, Bed, kill_tree
from tests.net.linphone import Linphone, linphone_missing
from tests.net.phone import (
    MIC,
    PLAY_SECONDS,
    command,
    heard,
    phone_bed,
    start_phone,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SIP_PORT = 5060
METRICS_PORT = 9100
DOMAIN = "example.test"
PASSWORDS = {"alice": "alice-s3cret", "bob": "bob-hunter2"}
BOB_TONE = 440.0  # linphone's microphone (baresip's is MIC, 880 Hz)
ALICE_EXPIRES = 10  # seconds: her binding must be gone soon after her phone dies


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    reason = linphone_missing()
    if reason:
        pytest.skip(reason)
    yield from phone_bed(tmp_path, "stdio")


def bindings(bed: Bed, redis_url: str, user: str) -> dict[str, dict[str, Any]]:
    """alice's or bob's bindings as stored: contact -> binding."""
    code = (
        "import json, redis\n"
        f"r = redis.Redis.from_url({redis_url!r})\n"
        f"found = r.hgetall('sessiond:location:{user}@{DOMAIN}')\n"
        "print(json.dumps({k.decode(): json.loads(v) for k, v in found.items()}))\n"
    )
    found: dict[str, dict[str, Any]] = json.loads(bed.python("pub", code))
    return found


def wait_bound(bed: Bed, redis_url: str, user: str, bound: bool, timeout: float) -> dict[str, Any]:
    """Poll Redis until ``user`` has a binding (``bound``) or none; the bindings."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = bindings(bed, redis_url, user)
        if bool(found) == bound:
            return found
        time.sleep(0.3)
    raise AssertionError(
        f"{user}: {'never bound' if bound else 'still bound'}\n{bed.log('sessiond')}"
    )


def up(bed: Bed, redis_url: str) -> list[str]:
    """The sids of the Established sessions (``ctl list``)."""
    rows = [line.split() for line in bed.ctl(redis_url, "list").splitlines()[1:-1]]
    return [row[0] for row in rows if len(row) > 2 and row[2] == "Established"]


def wait_calls(bed: Bed, redis_url: str, legs: int, timeout: float = 20) -> None:
    """Poll until ``legs`` sessions are Established (2: a call, its caller's leg and the
    leg to the phone called; 0: none left)."""
    deadline = time.monotonic() + timeout
    sids: list[str] = []
    while time.monotonic() < deadline:
        sids = up(bed, redis_url)
        if len(sids) == legs:
            return
        time.sleep(0.3)
    raise AssertionError(f"{sids} Established, not {legs}\n{bed.log('sessiond')}")


def wait_log(bed: Bed, name: str, pattern: str, timeout: float = 20) -> str:
    """Poll WORK/<name>.log until ``pattern`` is in it; the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, bed.log(name, tail=200_000))
        if found is not None:
            return found.group(0)
        time.sleep(0.2)
    raise AssertionError(f"{name} never printed /{pattern}/:\n{bed.log(name)}")


def auth_failures(bed: Bed) -> float:
    """The registrar's wrong-password counter, from the metrics page."""
    page = bed.python(
        "pub",
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5)"
        ".read().decode())",
    )
    found = re.search(
        r'^sessiond_registrar_auth_failures_total\{reason="wrong-password"\} (\S+)$', page, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_baresip_and_linphone_register_and_call_each_other_by_name(bed: Bed) -> None:
    redis_url = bed.start_redis()
    for user, password in PASSWORDS.items():
        bed.ctl(redis_url, "user", "add", f"{user}@{DOMAIN}", password)
    routes = bed.work / "routes.yaml"
    routes.write_text("latch_private: true  # alice is behind NAT\nrules: []\n")
    bed.start_sessiond(
        ["--redis", redis_url, "--listen", f"udp:0.0.0.0:{SIP_PORT}", "--advertise", PUBLIC]
        + ["--rtp-ports", "20000-20100", "--routes", str(routes), "--registrar", DOMAIN]
        + ["--registrar-min-expires", str(ALICE_EXPIRES), "--metrics-port", str(METRICS_PORT)]
    )
    registrar = f"{PUBLIC}:{SIP_PORT}"
    alice, dump = start_phone(
        bed,
        f'<sip:alice@{DOMAIN}>;auth_pass={PASSWORDS["alice"]};outbound="sip:{registrar}"'
        f";regint={ALICE_EXPIRES};answermode=auto",
        extra_config="module stdio.so\n",
        stdin=True,
    )
    bob_mic, bob_heard = bed.work / "bob_mic.wav", [bed.work / f"bob_heard_{n}.wav" for n in (1, 2)]
    write_tone_wav(bob_mic, BOB_TONE, 60.0)
    bob = Linphone(bed, "outside", "bob", PASSWORDS["bob"], DOMAIN, registrar)
    bob.start(bob_mic, bob_heard[0])
    try:
        # both register with digest auth: alice through her NAT, bob directly
        bob.wait_registration("Ok")
        (alice_binding,) = wait_bound(bed, redis_url, "alice", True, 20).values()
        (bob_binding,) = wait_bound(bed, redis_url, "bob", True, 20).values()
        assert alice_binding["source"].startswith(f"{ROUTER_WAN}:"), alice_binding
        assert alice_binding["user_agent"].startswith("baresip"), alice_binding
        assert alice_binding["expires_at"] - alice_binding["registered_at"] <= ALICE_EXPIRES
        assert bob_binding["user_agent"].startswith("Linphone"), bob_binding
        shown = bed.ctl(redis_url, "registrations")
        assert "2 binding(s) of 2 AOR(s)" in shown, shown

        # 1. bob calls alice by name; baresip answers; bob hangs up
        bob.call(f"sip:alice@{DOMAIN}")
        bob.wait_for(rf"Call \d+ with sip:alice@{DOMAIN} connected")
        wait_calls(bed, redis_url, 2)
        time.sleep(PLAY_SECONDS + 0.5)  # the tones flow both ways
        bob.terminate()
        bob.wait_for(rf"Call \d+ with sip:alice@{DOMAIN} ended")
        wait_calls(bed, redis_url, 0)

        # 2. alice calls bob by name; linphone answers; alice hangs up
        bob.record(bob_heard[1])
        command(alice, f"/dial sip:bob@{DOMAIN}")
        bob.wait_for(rf"Call \d+ with sip:alice@{DOMAIN} connected")
        wait_calls(bed, redis_url, 2)
        time.sleep(PLAY_SECONDS + 0.5)
        command(alice, "/hangup")
        bob.wait_for(rf"Call \d+ with sip:alice@{DOMAIN} ended")
        wait_calls(bed, redis_url, 0)

        # 3. bob unregisters: no binding, not listed, and a call to him gets 480
        bob.unregister()
        bob.wait_registration("Cleared")
        wait_bound(bed, redis_url, "bob", False, 20)
        shown = bed.ctl(redis_url, "registrations")
        assert f"sip:bob@{DOMAIN}" not in shown, shown
        assert "1 binding(s) of 1 AOR(s)" in shown, shown
        command(alice, f"/dial sip:bob@{DOMAIN}")
        wait_log(bed, "baresip", r"480 Temporarily Unavailable")

        # 4. alice's phone dies without unregistering: her binding expires by itself
        kill_tree(alice)
        wait_bound(bed, redis_url, "alice", False, ALICE_EXPIRES + 15)
        assert "0 binding(s) of 0 AOR(s)" in bed.ctl(redis_url, "registrations")

        # 5. a wrong password for bob: refused, never bound, counted
        before = auth_failures(bed)
        intruder = Linphone(
            bed, "outside", "bob", "guess", DOMAIN, registrar, name="intruder", port=5082,
            rtp=7090,
        )  # fmt: skip
        intruder.start(bob_mic, bed.work / "intruder_heard.wav")
        intruder.wait_for(r"SIP/2.0 401 ", debug=True)  # the challenge,
        intruder.wait_for(r"SIP/2.0 403 ", debug=True)  # its wrong answer refused
        intruder.wait_registration("Failed")
        assert auth_failures(bed) > before
        assert bindings(bed, redis_url, "bob") == {}
        intruder.quit()
    finally:
        bob.quit()
        stop(alice)
    # what each phone heard on each call: the other's tone
    enough = PLAY_SECONDS - 1.0
    decoded = sorted(dump.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
    assert len(decoded) == 2, (sorted(dump.iterdir()), bed.log("baresip"))
    for path in decoded[:2]:
        heard(path, BOB_TONE, enough)
    for path in bob_heard:
        heard(path, MIC, enough)
