"""Mid-call flows between SimplePeers over real SIP and RTP on loopback (embedded store):
hold and resume by re-INVITE, DTMF by SIP INFO, blind transfer by REFER. The far end is a
second sessiond instance, so each flow is exercised as the side that starts it and the side
that receives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sessiond import SimplePeer
from sessiond.api.call import Call
from sessiond.api.events import (
    DtmfReceived,
    HoldChanged,
    TransferRequested,
    TransferSucceeded,
)

from .helpers import free_udp_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[SimplePeer, SimplePeer, SimplePeer]]:
    async with (
        SimplePeer("alice", free_udp_port(), rtp_ports="21400-21499") as alice,
        SimplePeer("bob", free_udp_port(), rtp_ports="21500-21599") as bob,
        SimplePeer("carol", free_udp_port(), rtp_ports="21600-21699") as carol,
    ):
        yield alice, bob, carol


async def _connect(caller: SimplePeer, callee: SimplePeer) -> tuple[Call, Call]:
    """``caller`` calls ``callee``, which accepts: both calls, established."""

    async def accept() -> Call:
        return await (await callee.incoming_call(timeout=10)).accept()

    answered = asyncio.create_task(accept())
    call = await caller.call(f"sip:{callee.name}@127.0.0.1:{callee.port}", timeout=10)
    return call, await asyncio.wait_for(answered, 10)


async def _history(peer: SimplePeer, sid: str) -> list[tuple[str, str, str]]:
    return [(h["from"], h["event"], h["to"]) for h in await peer.client.history(sid)]


async def test_hold_and_resume_both_sides_see_it(
    peers: tuple[SimplePeer, SimplePeer, SimplePeer],
) -> None:
    alice, bob, _ = peers
    call, bob_call = await _connect(alice, bob)

    held = await call.hold()
    assert held.hold == "local"
    remote = await bob_call.wait_for(HoldChanged, timeout=10)
    assert isinstance(remote, HoldChanged)
    assert remote.hold == "remote"
    assert (await alice.client.session(call.sid))["hold"] == "local"
    assert "a=sendonly" in (await alice.client.session(call.sid))["local_sdp"]
    assert "a=recvonly" in (await bob.client.session(bob_call.sid))["local_sdp"]

    resumed = await call.resume()
    assert resumed.hold == ""
    back = await bob_call.wait_for(HoldChanged, timeout=10)
    assert isinstance(back, HoldChanged)
    assert back.hold == ""
    assert "a=sendrecv" in (await alice.client.session(call.sid))["local_sdp"]

    await call.hangup()
    await bob_call.wait_ended(timeout=10)
    steps = await _history(alice, call.sid)
    assert ("Established", "Hold", "Reoffering") in steps
    assert ("Reoffering", "MediaReady", "Reinviting") in steps
    assert ("Reinviting", "Answered", "Established") in steps
    assert ("Established", "ReInvite", "Reanswering") in await _history(bob, bob_call.sid)
    assert ("Reconfirming", "Ack", "Established") in await _history(bob, bob_call.sid)


async def test_dtmf_by_sip_info_arrives_in_order(
    peers: tuple[SimplePeer, SimplePeer, SimplePeer],
) -> None:
    alice, bob, _ = peers
    call, bob_call = await _connect(alice, bob)
    await call.send_dtmf("19#*", method="info")
    digits = []
    for _ in range(4):
        event = await bob_call.wait_for(DtmfReceived, timeout=10)
        assert isinstance(event, DtmfReceived)
        digits.append(event.digit)
    assert digits == ["1", "9", "#", "*"]
    steps = await _history(bob, bob_call.sid)
    assert steps.count(("Established", "Info", "Established")) == 4
    await call.hangup()


async def test_blind_transfer_the_transferee_calls_the_target(
    peers: tuple[SimplePeer, SimplePeer, SimplePeer],
) -> None:
    alice, bob, carol = peers
    call, bob_call = await _connect(alice, bob)

    carol_answers = asyncio.create_task(carol.incoming_call(timeout=20))
    transfer = asyncio.create_task(bob_call.transfer(f"sip:carol@127.0.0.1:{carol.port}"))
    carol_call = await (await carol_answers).accept()
    assert isinstance(await asyncio.wait_for(transfer, 20), TransferSucceeded)

    new_call = await call.wait_transferred(timeout=10)
    await new_call.wait_established(timeout=10)
    requested = next(e for e in call.events if isinstance(e, TransferRequested))
    assert requested.new_sid == new_call.sid
    # the transferor hung up once the target answered: the original call is over
    await call.wait_ended(timeout=10)
    await bob_call.wait_ended(timeout=10)
    assert not new_call.ended
    assert not carol_call.ended
    await new_call.hangup()
    await carol_call.wait_ended(timeout=10)

    bob_steps = await _history(bob, bob_call.sid)
    assert ("Established", "Notify", "Terminating") in bob_steps
    alice_steps = await _history(alice, call.sid)
    assert ("Established", "Refer", "Established") in alice_steps
    assert ("Established", "TransferProgress", "Established") in alice_steps
    assert (await alice.client.session(new_call.sid))["peer"] == call.sid


async def test_attended_transfer_replaces_the_consultation_call(
    peers: tuple[SimplePeer, SimplePeer, SimplePeer],
) -> None:
    """Alice talks to Bob, consults Carol, then transfers Bob to Carol with Replaces: Bob's
    new call takes over Alice's call with Carol, and both of Alice's calls end."""
    alice, bob, carol = peers
    to_bob, bob_call = await _connect(alice, bob)
    to_carol, carol_call = await _connect(alice, carol)

    await alice.client.attended_transfer(to_bob.sid, to_carol.sid)
    new_call = await bob_call.wait_transferred(timeout=10)
    await new_call.wait_established(timeout=10)
    await to_bob.wait_ended(timeout=10)  # Alice hangs up once Bob reached Carol
    await to_carol.wait_ended(timeout=10)  # Carol's replaced dialog is ended by Carol
    await carol_call.wait_ended(timeout=10)
    await bob_call.wait_ended(timeout=10)

    carol_sessions = [s for s in await _sessions(carol) if s["sid"] != carol_call.sid]
    assert len(carol_sessions) == 1
    replacing = carol_sessions[0]
    assert replacing["state"] == "Established"
    assert replacing["replaces_sid"] == carol_call.sid
    carol_steps = await _history(carol, carol_call.sid)
    assert ("Established", "Replaced", "Terminating") in carol_steps
    assert (await alice.client.session(to_bob.sid))["end_reason"] == "transferred"
    await new_call.hangup()


async def _sessions(peer: SimplePeer) -> list[dict[str, str]]:
    out = []
    async for key in peer.client.redis.scan_iter(match=f"{peer.namespace}:*:session:*"):
        raw = await peer.client.redis.hgetall(key)
        out.append({k.decode(): v.decode() for k, v in raw.items()})
    return out
