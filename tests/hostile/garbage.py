"""A bounded burst of garbage datagrams for the edge, from a separate process (so the sender
does not share the edge's interpreter): random bytes, and near-SIP messages (valid requests of
every method, and the same with bytes flipped, lines cut or repeated, non-UTF-8 bytes), each
with a new Call-ID and branch so nothing is a retransmission.

``python garbage.py PORT COUNT SEED`` sends COUNT datagrams to 127.0.0.1:PORT and prints how
many it sent. Loopback only; bounded in count (and by the kernel's socket buffer in rate).
"""

from __future__ import annotations

import random
import socket
import sys
import time

METHODS = (
    "INVITE OPTIONS BYE CANCEL ACK REGISTER MESSAGE INFO UPDATE REFER NOTIFY PRACK SUBSCRIBE "
    "PUBLISH FOO XYZZY"
).split()


def near_sip(rnd: random.Random, port: int) -> bytes:
    method = rnd.choice(METHODS)
    call_id = f"{rnd.getrandbits(64):x}@{rnd.getrandbits(32):x}"
    branch = f"z9hG4bK{rnd.getrandbits(64):x}"
    tag = f"{rnd.getrandbits(32):x}"
    src = f"127.0.0.1:{rnd.randrange(1024, 65535)}"
    to_tag = f";tag={rnd.getrandbits(32):x}" if rnd.random() < 0.5 else ""
    lines = [
        f"{method} sip:u{rnd.getrandbits(20)}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {src};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:a{rnd.getrandbits(16)}@127.0.0.1>;tag={tag}",
        f"To: <sip:b{rnd.getrandbits(16)}@127.0.0.1>{to_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {rnd.randrange(1, 2**31)} {method}",
        f"Contact: <sip:c@{src}>",
        f"User-Agent: g{rnd.getrandbits(64):x}",
        f"X-{rnd.getrandbits(24):x}: {rnd.getrandbits(128):x}",
        "Content-Length: 0",
    ]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    roll = rnd.random()
    if roll < 0.4:
        return data
    buf = bytearray(data)
    if roll < 0.7:  # flip some bytes, non-UTF-8 ones included
        for _ in range(rnd.randrange(1, 8)):
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
    elif roll < 0.85:  # cut
        del buf[rnd.randrange(len(buf)) :]
    else:  # a header repeated
        line = rnd.choice(lines[1:]).encode() + b"\r\n"
        at = data.index(b"\r\n") + 2
        buf[at:at] = line * rnd.randrange(2, 40)
    return bytes(buf)


def garbage(rnd: random.Random, port: int) -> bytes:
    if rnd.random() < 0.3:
        return rnd.randbytes(rnd.randrange(1, 1400))
    return near_sip(rnd, port)


def blast(port: int, count: int, seed: int) -> int:
    rnd = random.Random(seed)
    sent = 0
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        while sent < count:
            data = garbage(rnd, port)
            try:
                socks[sent % len(socks)].sendto(data, ("127.0.0.1", port))
            except OSError:  # ENOBUFS and the like: the burst is best effort
                time.sleep(0.001)
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.002)  # keep the kernel queue from overflowing
    finally:
        for sock in socks:
            sock.close()
    return sent


if __name__ == "__main__":
    print(blast(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
