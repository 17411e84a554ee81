"""SimplePeer against SimplePeer over real SIP and RTP on loopback (embedded store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sessiond import (
    CallRejected,
    DtmfReceived,
    Ended,
    Established,
    IncomingCall,
    SessiondError,
    SimplePeer,
)
from sessiond.core.errors import SessiondError as RootError

from .helpers import free_udp_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[SimplePeer, SimplePeer]]:
    async with (
        SimplePeer("alice", free_udp_port(), rtp_ports="21200-21299") as alice,
        SimplePeer("bob", free_udp_port(), rtp_ports="21300-21399") as bob,
    ):
        yield alice, bob


async def test_dtmf_from_alice_reaches_bob_as_an_event(
    peers: tuple[SimplePeer, SimplePeer],
) -> None:
    alice, bob = peers

    async def answer() -> tuple[str, list[str]]:
        incoming = await bob.incoming_call(timeout=10)
        assert "sip:alice@127.0.0.1" in incoming.remote_uri
        call = await incoming.accept()
        digits = [await call.wait_for(DtmfReceived, timeout=10) for _ in range(2)]
        await call.wait_ended(timeout=10)
        return call.state, [d.digit for d in digits if isinstance(d, DtmfReceived)]

    bob_side = asyncio.create_task(answer())
    call = await alice.call(f"sip:bob@127.0.0.1:{bob.port}", timeout=10)
    assert call.state == "Established"
    assert any(isinstance(e, Established) for e in call.events)
    await call.send_dtmf("4")
    await asyncio.sleep(0.3)
    await call.send_dtmf("#")
    await asyncio.sleep(0.3)
    ended = await call.hangup()
    assert isinstance(ended, Ended)
    assert ended.code == 200
    assert await asyncio.wait_for(bob_side, 10) == ("Terminated", ["4", "#"])


async def test_bob_rejects_with_486_and_alice_gets_call_rejected(
    peers: tuple[SimplePeer, SimplePeer],
) -> None:
    alice, bob = peers

    async def refuse() -> str:
        incoming = await bob.incoming_call(timeout=10)
        assert isinstance(incoming.event, IncomingCall)
        ended = await incoming.reject(486)
        return ended.state

    bob_side = asyncio.create_task(refuse())
    with pytest.raises(CallRejected) as info:
        await alice.call(f"sip:bob@127.0.0.1:{bob.port}", timeout=10)
    assert info.value.code == 486
    assert isinstance(info.value, SessiondError)
    assert SessiondError is RootError
    assert await asyncio.wait_for(bob_side, 10) == "Terminated"
