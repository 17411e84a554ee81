"""Micro-benchmark of the SIP parser: parse + serialize of a realistic INVITE with SDP."""

from __future__ import annotations

import time

from sessiond.sip.message import parse_message

_SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 198.51.100.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"User-Agent: sessiond-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n"
    b"\r\n" + _SDP
)


def bench_parse(seconds: float = 2.0) -> dict[str, float]:
    """Parse and serialize :data:`INVITE` repeatedly for about ``seconds``.

    The run is split into rounds of about 0.1 s. ``messages_per_s`` is the best round (as
    ``timeit`` advises: slower rounds measure other load on the machine, not the parser);
    ``mean_messages_per_s`` is the whole run. One message = one parse plus one serialize.
    """
    data = INVITE
    if bytes(parse_message(data)) != data:
        raise AssertionError("benchmark message does not round-trip")
    batch = 500
    total = 0
    best = float("inf")
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        round_start = time.perf_counter()
        for _ in range(batch):
            bytes(parse_message(data))
        now = time.perf_counter()
        best = min(best, (now - round_start) / batch)
        total += batch
        if now >= deadline:
            break
    elapsed = now - start
    return {
        "messages_per_s": 1.0 / best,
        "mean_messages_per_s": total / elapsed,
        "us_per_message": best * 1e6,
        "bytes": float(len(data)),
    }
