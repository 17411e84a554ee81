"""An SRTP call whose media node dies is re-keyed: edge, two workers and two media nodes
(``--srtp require``) as processes on a real Redis, a SimplePeer with SRTP as the far end.

The node serving the call is killed; the call moves to the other node (MediaLost, a new leg,
re-INVITE). The new leg was made by another node, so its keys are new: the re-INVITE offers
them (nothing about the old keys was kept to reuse), the peer answers, and the audio the new
node plays reaches the peer through SRTP with the new keys."""

from __future__ import annotations

import asyncio
import time
from array import array
from pathlib import Path

import pytest

from api.audio_checks import dominant
from sessiond import SimplePeer
from sessiond.media.sdes_sdp import crypto_values
from sessiond.media.sdp import SessionDescription

from .harness import Cluster, free_port, free_rtp_range, wait_for
from .test_call_flows import client, edge_requests, only_session

pytestmark = [pytest.mark.redis, pytest.mark.slow]
SRTP = ("--srtp", "require")


def our_keys(sdp: str) -> list[str]:
    """The ``inline:`` keys of an SDP's audio section."""
    section = SessionDescription.parse(sdp).media[0]
    assert section.proto == "RTP/SAVP", section.proto
    return [value.split("inline:")[1].split("|")[0] for value in crypto_values(section)]


def test_a_moved_srtp_leg_offers_new_keys_and_its_audio_flows(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = cluster.start_split("--answer", "auto", media_args=SRTP)
    last = int(free_rtp_range(600).split("-")[1])
    cluster.start_media("media2", "m2", f"{last + 2}-{last + 302}", *SRTP)
    zset = f"{cluster.namespace}:processes:media"
    assert wait_for(lambda: len(cluster.redis().zrange(zset, 0, -1)) == 2, 15)
    procs = {"m1": "media", "m2": "media2"}
    peer_ports = f"{last + 304}-{last + 404}"

    async def drive() -> tuple[dict[str, str], dict[str, str], list[bytes], int]:
        async with SimplePeer("bob", free_port(), rtp_ports=peer_ports, srtp="require") as bob:
            call = await bob.call(f"sip:alice@127.0.0.1:{port}")
            before = only_session(cluster)
            leg = bob.leg(call.sid)
            assert leg is not None
            assert leg.srtp is not None
            cluster.kill(procs[before["media_node"]])
            deadline = time.monotonic() + 40
            while True:
                after = only_session(cluster)
                if after["state"] == "Established" and after["media_node"] not in (
                    "",
                    before["media_node"],
                ):
                    break
                assert time.monotonic() < deadline, cluster.steps(before["sid"])
                await asyncio.sleep(0.1)
            async with client(cluster) as app:
                await app.play(after["sid"], tone=440.0, seconds=3.0)
            await asyncio.sleep(0.5)
            heard = [await call.recv_audio(timeout=2.0) for _ in range(75)]
            errors = leg.srtp_errors
            await call.hangup()
            return before, after, heard, errors

    before, after, heard, errors = asyncio.run(drive())
    old, new = our_keys(before["local_sdp"]), our_keys(after["local_sdp"])
    assert len(old) == 1  # our answer: one line
    assert len(new) == 4  # the new node's fresh offer: one line (and key) per suite
    (reinvite,) = edge_requests(cluster, "INVITE")
    assert our_keys(str(reinvite["sdp"])) == our_keys(after["local_sdp"])
    assert not set(old) & set(new), "the new node offered a key of the lost one"
    assert after.get("srtp", "") == ""  # no route policy: the nodes' --srtp applied
    loud = array("h", b"".join(f for f in heard if max(array("h", f)) > 2000))
    assert len(loud) >= 160 * 40, f"the peer heard {len(loud) // 160} loud frames after the move"
    assert dominant(loud, (300.0, 440.0, 1000.0)) == 440.0
    assert errors < 50, f"{errors} SRTP packets refused by the peer"
