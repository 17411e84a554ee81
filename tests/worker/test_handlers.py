"""Every signaling-handler decision over real SIP: ``sessiond run --redis`` with a routing
file (or a custom handler class), sipp as the caller, and a Client as the application.

One service per module serves the routing-file tests: rules by To user pick the decision
(busy -> 486, desk -> defer, old -> redirect, closed -> play-and-hang-up, fwd -> forward to
a sipp callee, default accept).
Its table is the default one with a 2 s Deferred timeout, so the routes say ``defer: 2``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from api.helpers import Service
from ports import free_port
from sessiond.core.resources import default_table_path, gateway_table_path
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace
from sessiond_run import ENV
from sipp_scenarios import OK_TO_LAST, SIPP_ACK, SIPP_INVITE, uac_refused

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(45),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

DEFER_SECONDS = 2


FORWARD_PORT = free_port()  # the sipp callee of the forward rule

ROUTES = f"""
rules:
  - match: {{to: "sip:busy@*"}}
    do: {{reject: 486}}
  - match: {{to: "re:^sip:desk@"}}
    do: {{defer: {DEFER_SECONDS}}}
  - match: {{to: "sip:old@*", headers: {{contact: "*sipp*"}}}}
    do: {{redirect: ["sip:new@example.com", "sip:backup@example.org"]}}
  - match: {{to: "sip:closed@*"}}
    do: {{play: {{tone: 440, seconds: 1}}}}
  - match: {{to: "sip:fwd@*"}}
    do: {{forward: "sip:callee@127.0.0.1:{FORWARD_PORT}"}}
default: accept
"""

HANDLER_MODULE = '''
from sessiond.handlers import Accept, Reject


class VipOnly:
    """Accept calls to vip@..., refuse the others with 403."""

    def decide(self, call):
        return Accept() if call.to_uri.split("@")[0].endswith("vip") else Reject(403)
'''

# The 302 must carry both contacts in its Contact header.
REDIRECT_CHECK = (
    '<action><ereg regexp="sip:new@example.com.*sip:backup@example.org" search_in="hdr" '
    'header="Contact:" check_it="true" assign_to="c"/></action>'
)

# A caller that is answered, then receives a BYE from the service (play-and-hang-up).
ANSWERED_THEN_BYE = (
    '<?xml version="1.0"?>\n<scenario name="answered then BYE">\n'
    + SIPP_INVITE
    + '  <recv response="200" rtd="true"/>\n'
    + SIPP_ACK
    + '  <recv request="BYE"/>\n'
    + OK_TO_LAST
    + "</scenario>\n"
)


async def sipp(service: Service, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One sipp call to ``user`` at the service (bounded); args: the scenario options."""
    command = ["sipp", "-nostdin", "-timeout", "25", "-p", str(free_port())]
    command += ["-mp", str(free_port()), "-m", "1", "-s", user, *args]
    command += [f"127.0.0.1:{service.port}"]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=service.tmp,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0 and "Successful call" in result.stdout


async def scenario(service: Service, user: str, text: str) -> subprocess.CompletedProcess[str]:
    path = service.tmp / f"{user}-{uuid.uuid4().hex[:6]}.xml"
    path.write_text(text)
    return await sipp(service, user, "-sf", str(path))


async def ended_session(service: Service, to_user: str, code: str = "") -> dict[str, str]:
    """An ended session whose local URI names ``to_user`` (and that ended with ``code``)."""
    redis = connect(service.redis_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async for key in redis.scan_iter(match=f"{service.namespace}:*:session:*"):
                raw = await redis.hgetall(key)
                session = {k.decode(): v.decode() for k, v in raw.items()}
                if (
                    f"{to_user}@" in session.get("local_uri", "")
                    and session.get("state") == "Terminated"
                    and session.get("end_code", "").startswith(code)
                ):
                    return session
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"no ended session for {to_user}:\n{service.log()}")


@pytest.fixture(scope="module")
def routed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("routed")
    table = tmp / "short_defer.yaml"
    text = default_table_path().read_text()
    short = text.replace("{after: 20, event: DeferTimeout}", "{after: 2, event: DeferTimeout}")
    assert short != text
    table.write_text(short)
    (tmp / "routes.yaml").write_text(ROUTES)
    gateway = str(gateway_table_path())
    service = Service(
        redis_url, tmp, "--routes", "routes.yaml", "--table", str(table), "--table", gateway
    )
    yield service
    service.stop()
    asyncio.run(_cleanup(redis_url, service.namespace))


async def _cleanup(redis_url: str, namespace: str) -> None:
    redis = connect(redis_url)
    await delete_namespace(redis, namespace)
    await redis.aclose()


async def test_default_rule_accepts(routed: Service) -> None:
    result = await sipp(routed, "anyone", "-sn", "uac", "-d", "200")
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    session = await ended_session(routed, "anyone")
    assert session["end_reason"] == "remote hangup"


async def test_rule_rejects_486(routed: Service) -> None:
    result = await scenario(routed, "busy", uac_refused(486))
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    assert (await ended_session(routed, "busy"))["end_code"] == "486"


async def test_redirect_answers_302_with_the_contacts(routed: Service) -> None:
    result = await scenario(routed, "old", uac_refused(302, REDIRECT_CHECK))
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    session = await ended_session(routed, "old")
    assert (session["end_code"], session["end_reason"]) == ("302", "redirected")


async def test_redirect_contact_check_can_fail(routed: Service) -> None:
    """The ereg check is real: a Contact the 302 does not carry fails the sipp call."""
    wrong = REDIRECT_CHECK.replace("sip:new@example.com", "sip:nobody@example.net")
    result = await scenario(routed, "old", uac_refused(302, wrong))
    assert not succeeded(result)


async def test_defer_answered_by_the_app(routed: Service) -> None:
    async with routed.client(f"g{uuid.uuid4().hex[:6]}") as client:
        call = asyncio.create_task(sipp(routed, "desk", "-sn", "uac", "-d", "200"))
        async for event in client.incoming_calls():
            if "desk@" in event.local_uri:
                session = await client.wait_for_state(event.sid, "Deferred", timeout=5)
                assert session["state"] == "Deferred"
                await client.accept(event.sid)
                break
        result = await call
    assert succeeded(result), result.stdout[-1500:] + routed.log()


async def test_defer_times_out_with_480(routed: Service) -> None:
    started = time.monotonic()
    result = await scenario(routed, "desk", uac_refused(480))
    elapsed = time.monotonic() - started
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    assert elapsed >= DEFER_SECONDS - 0.2
    session = await ended_session(routed, "desk", "480")
    assert session["end_reason"] == "the application did not answer in time"


async def test_play_and_hang_up(routed: Service) -> None:
    started = time.monotonic()
    result = await scenario(routed, "closed", ANSWERED_THEN_BYE)
    elapsed = time.monotonic() - started
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    assert elapsed >= 1.0  # the BYE came after the 1 s tone
    session = await ended_session(routed, "closed")
    assert session["end_reason"] == "played and hung up"


async def test_forward_bridges_the_caller_to_the_target(routed: Service) -> None:
    """The forward rule: a B2BUA call to a sipp callee; the caller's BYE ends both legs."""
    callee = subprocess.Popen(
        ["sipp", "-sn", "uas", "-nostdin", "-buff_size", "4194304", "-p", str(FORWARD_PORT)]
        + ["-mp", str(free_port()), "-m", "1", "-timeout", "25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=routed.tmp,
    )
    try:
        result = await sipp(routed, "fwd", "-sn", "uac", "-d", "200")
        out, _ = await asyncio.to_thread(callee.communicate, timeout=30)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    assert succeeded(result), result.stdout[-1500:] + routed.log()
    assert callee.returncode == 0, out[-1500:]  # answered, then got the BYE
    session = await ended_session(routed, "fwd")
    assert (session["table"], session["end_reason"]) == ("gateway", "remote hangup")


@pytest.fixture
async def custom(redis_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    (tmp_path / "myhandlers.py").write_text(HANDLER_MODULE)
    service = Service(redis_url, tmp_path, "--handler", "myhandlers:VipOnly")
    yield service
    service.stop()
    await _cleanup(redis_url, service.namespace)


async def test_custom_handler_class_by_dotted_path(custom: Service) -> None:
    accepted = await sipp(custom, "vip", "-sn", "uac", "-d", "200")
    assert succeeded(accepted), accepted.stdout[-1500:] + custom.log()
    refused_call = await scenario(custom, "someone", uac_refused(403))
    assert succeeded(refused_call), refused_call.stdout[-1500:] + custom.log()


def test_bad_handler_path_stops_the_service(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sessiond", "run", "--handler", "nosuchmodule:Nope"],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot import 'nosuchmodule'" in result.stderr
