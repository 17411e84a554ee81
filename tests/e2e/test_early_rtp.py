"""RFC 3264 6: sessiond's media for a call it answers starts once the answer is out. While
the call rings (a 180 without SDP) no RTP reaches the caller, which would otherwise replace
the caller's own ringback with our silence; after the 200 it flows. A caller made of two
plain UDP sockets (SIP and RTP), against edge + worker + media as separate processes."""

from __future__ import annotations

import asyncio
import socket

from sessiond.api.client import Client

from .harness import Cluster, wait_for


def _invite(sip_port: int, rtp_port: int, edge_port: int) -> bytes:
    sdp = (
        f"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
    return (
        f"INVITE sip:svc@127.0.0.1:{edge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-early1\r\n"
        f"From: <sip:caller@127.0.0.1:{sip_port}>;tag=c1\r\nTo: <sip:svc@127.0.0.1>\r\n"
        f"Call-ID: early-rtp@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:caller@127.0.0.1:{sip_port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _in_dialog(method: str, cseq: int, to: str, sip_port: int, edge_port: int) -> bytes:
    return (
        f"{method} sip:svc@127.0.0.1:{edge_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-early{method}{cseq}\r\n"
        f"From: <sip:caller@127.0.0.1:{sip_port}>;tag=c1\r\nTo: {to}\r\n"
        f"Call-ID: early-rtp@test\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def _expect(sock: socket.socket, status: str) -> str:
    """Skip other responses until one with ``status``."""
    while True:
        reply = sock.recv(65535).decode()
        if reply.startswith(f"SIP/2.0 {status}"):
            return reply


def _header(msg: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in msg.split("\r\n") if line.startswith(name)
    )


def test_no_rtp_reaches_the_caller_before_the_answer(cluster: Cluster) -> None:
    edge_port = cluster.start_split("--answer", "app")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
    ):
        sip.bind(("127.0.0.1", 0))
        rtp.bind(("127.0.0.1", 0))
        sip.settimeout(10)
        sip_port, rtp_port = sip.getsockname()[1], rtp.getsockname()[1]
        sip.sendto(_invite(sip_port, rtp_port, edge_port), ("127.0.0.1", edge_port))
        _expect(sip, "180")
        assert wait_for(lambda: any(s.get("media_node") for s in cluster.sessions()))
        rtp.settimeout(1.0)  # ringing, our answer ready on the media node: nothing comes
        try:
            data, _ = rtp.recvfrom(2048)
            raise AssertionError(f"RTP before the answer: {len(data)} bytes")
        except TimeoutError:
            pass
        sid = cluster.sessions()[0]["sid"]

        async def accept() -> None:
            async with Client(cluster.redis_url, namespace=cluster.namespace) as app:
                await app.accept(sid)

        asyncio.run(accept())
        ok = _expect(sip, "200")
        to = _header(ok, "To")
        sip.sendto(_in_dialog("ACK", 1, to, sip_port, edge_port), ("127.0.0.1", edge_port))
        rtp.settimeout(5.0)
        packet, _ = rtp.recvfrom(2048)
        assert packet[0] >> 6 == 2  # an RTP version 2 packet, once answered
        sip.sendto(_in_dialog("BYE", 2, to, sip_port, edge_port), ("127.0.0.1", edge_port))
        _expect(sip, "200")
    assert wait_for(lambda: cluster.sessions()[0].get("state") == "Terminated")
