"""``sessiond bench memory``: Redis memory per live answered call, and what holding them costs.

``sessiond run --redis`` (``--answer auto``, 1 worker, ``--idle-rtp keepalive`` unless told
otherwise) on a private ``redis-server``; a sipp caller places ``--calls`` calls and holds
them. Once they are all established the bench reads ``INFO memory`` (``used_memory`` against
the idle baseline, divided by the calls) and ``MEMORY USAGE`` of every key, summed by key
family (the names of ``store/keys.py``): what a call leaves in its session hash, history
list, registry strings, media-owner hash, the edge's stored answers, and what it adds to the
shared streams. A second reading after 64*T1 (32 s) shows the same calls once the stored
answers expired; the media node's CPU is measured over those 32 s.

The media node's RTP range (from port 45000) holds the calls plus two seconds of calls at
``--rate`` and 50 legs (the edge's ``--media-reserve`` is 20), so the held calls nearly fill
it: of the ``--overflow`` INVITEs sent next, 20 ms apart from another socket, the first ones
take the legs left above the reserve and the rest find the tier full. The bench prints how many were
answered 503 and how long each took, how many were admitted, and whether every held call is
still the same Established session afterwards.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as sync_redis

from sessiond.cli.bench.dialog_sipp import caller_xml
from sessiond.cli.bench.peer_systems import PeerMissing, cpu_seconds, start_sessiond
from sessiond.cli.bench.spawn import free_udp_port, missing_tool
from sessiond.core.ids import TAG_LEN

NAMESPACE = "mem"
MAX_CALLS = 10_000
ANSWERS_EXPIRE = 33.0  # 64*T1 and a second

_CALL_TAG = re.compile(rf"[0-9a-f]{{{TAG_LEN}}}")
_PARTITION = re.compile(r"p\d+")


def family(key: str, namespace: str = NAMESPACE) -> str:
    """The family of a key name of ``store/keys.py``: ``session``, ``history``, ``applied``,
    ``dialog``, ``initial``, ``media``, ``media-owner`` (a call's own keys, hash tag ``{T}``),
    ``partition events``, ``edge commands``... (shared, tagged by what they serve), or the
    first name part of an untagged key (``answered``, ``process``...)."""
    rest = key.removeprefix(f"{namespace}:")
    if not rest.startswith("{"):
        return rest.split(":", 1)[0]
    tag, _, tail = rest[1:].partition("}:")
    kind = tail.split(":", 1)[0]
    if _CALL_TAG.fullmatch(tag):
        return kind
    head = tag.split(":", 1)[0]
    if head == "leases":
        return "leases"
    return f"{'partition' if _PARTITION.fullmatch(head) else head} {kind}"


Reading = tuple[int, dict[str, tuple[int, int]]]  # used_memory, family -> (keys, bytes)


def read(client: sync_redis.Redis, namespace: str = NAMESPACE) -> Reading:
    """``used_memory`` and (keys, ``MEMORY USAGE`` bytes) per family."""
    keys = [k.decode() for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    families: dict[str, tuple[int, int]] = {}
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, pipe.execute(), strict=True):
            count, total = families.get(family(key, namespace), (0, 0))
            families[family(key, namespace)] = (count + 1, total + int(size or 0))
    used = int(client.info("memory")["used_memory"])
    return used, families


def established_sids(client: sync_redis.Redis, namespace: str = NAMESPACE) -> set[bytes]:
    """The session keys in state Established."""
    keys = list(client.scan_iter(match=f"{namespace}:*:session:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "state")
    return {key for key, state in zip(keys, pipe.execute(), strict=True) if state == b"Established"}


def established(client: sync_redis.Redis, namespace: str = NAMESPACE) -> int:
    """Sessions in state Established."""
    return len(established_sids(client, namespace))


_OFFER = (
    "v=0\r\no=over 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _invite(port: int, local: int, n: int, nonce: str) -> bytes:
    return (
        f"INVITE sip:bench@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-over-{nonce}-{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:over@127.0.0.1>;tag=o{n}\r\nTo: <sip:bench@127.0.0.1>\r\n"
        f"Call-ID: over-{nonce}-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:over@127.0.0.1:{local}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(_OFFER)}\r\n\r\n{_OFFER}"
    ).encode()


def overflow_calls(port: int, count: int, gap: float = 0.02) -> tuple[list[float], int, int]:
    """Send ``count`` INVITEs ``gap`` s apart and read the answers for 3 s after the last:
    (seconds to each 503, calls answered 180/200 instead, INVITEs with no final answer or
    180). The admitted calls are never ACKed: their 200s time out and they end with a BYE."""
    nonce = secrets.token_hex(4)
    sent: dict[str, float] = {}
    refused: dict[str, float] = {}
    admitted: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        local = sock.getsockname()[1]
        n = 0
        end = time.monotonic() + count * gap + 3.0
        next_send = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if n < count and now >= next_send:
                sent[f"over-{nonce}-{n}@127.0.0.1"] = now
                sock.sendto(_invite(port, local, n, nonce), ("127.0.0.1", port))
                n += 1
                next_send += gap
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            first, _, rest = data.partition(b"\r\n")
            match = re.search(rb"(?im)^(?:Call-ID|i):\s*(\S+)", rest)
            if not first.startswith(b"SIP/2.0 ") or match is None:
                continue
            code, call_id = int(first.split()[1]), match[1].decode()
            if call_id not in sent:
                continue
            if code == 503 and call_id not in refused:
                refused[call_id] = time.monotonic() - sent[call_id]
            elif code in (180, 183, 200):
                admitted.add(call_id)
    lost = len(sent) - len(refused) - len(admitted)
    return sorted(refused.values()), len(admitted), lost


def report(calls: int, base: Reading, readings: list[tuple[str, Reading]]) -> None:
    """Bytes (and keys) per call by family, against the idle baseline."""
    names = sorted({f for _, (_, fams) in readings for f in fams} | set(base[1]))
    head = "".join(f" {label:>24}" for label, _ in readings)
    print(f"\n{'':<22}{head}")
    print(f"{'':<22}" + "".join(f" {'keys/call':>11} {'bytes/call':>12}" for _ in readings))
    rows: list[tuple[str, list[tuple[float, float]]]] = []
    for name in names:
        k0, b0 = base[1].get(name, (0, 0))
        rows.append(
            (
                name,
                [
                    (
                        (fams.get(name, (0, 0))[0] - k0) / calls,
                        (fams.get(name, (0, 0))[1] - b0) / calls,
                    )
                    for _, (_, fams) in readings
                ],
            )
        )
    rows.sort(key=lambda row: -row[1][0][1])
    for name, cells in rows:
        print(f"{name:<22}" + "".join(f" {k:>11.2f} {b:>12.0f}" for k, b in cells))
    totals = [
        (
            sum(c[i][0] for _, c in rows),
            sum(c[i][1] for _, c in rows),
        )
        for i in range(len(readings))
    ]
    print(f"{'all keys':<22}" + "".join(f" {k:>11.2f} {b:>12.0f}" for k, b in totals))
    print(
        f"{'INFO used_memory':<22}"
        + "".join(f" {'':>11} {(used - base[0]) / calls:>12.0f}" for _, (used, _) in readings)
    )


def details(client: sync_redis.Redis, calls: int, namespace: str = NAMESPACE) -> None:
    """What fills the largest families: lines per call of the history lists, entries of the
    shared streams, fields of the hashes, how Redis encodes a call's keys (a hash with a
    value over ``hash-max-listpack-value``, 64 bytes by default, is a hashtable), and the
    session hash's largest fields."""
    entries: dict[str, int] = {}
    encodings: dict[str, int] = {}
    fields: dict[str, int] = {}
    for raw in client.scan_iter(match=f"{namespace}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = family(key, namespace)
        if client.type(key) == b"stream":
            entries[kind] = entries.get(kind, 0) + int(client.xlen(key))
        if kind not in ("applied", "outbox", "session", "history"):
            continue
        encoding = client.object("encoding", key)
        label = f"{kind} {encoding.decode() if isinstance(encoding, bytes) else encoding}"
        encodings[label] = encodings.get(label, 0) + 1
        if kind == "history":
            entries[kind] = entries.get(kind, 0) + int(client.llen(key))
            continue
        values: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
        entries[kind] = entries.get(kind, 0) + len(values)
        for name, value in values.items():
            part = f"session:{name.decode()}" if kind == "session" else f"{kind}:(event ids)"
            if kind == "outbox":
                part = "outbox:(not emitted)"
            fields[part] = fields.get(part, 0) + len(name) + len(value)
    print("\nentries per call (streams, history lines), fields per call (hashes):")
    for kind, count in sorted(entries.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<22} {count / calls:8.2f}")
    print("encodings: " + ", ".join(f"{k} x{v}" for k, v in sorted(encodings.items())))
    print("largest hash contents (bytes of name + value per call):")
    for part, total in sorted(fields.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {part:<32} {total / calls:8.0f}")


def _hold(port: int, calls: int, rate: int, hold: float, work: Path) -> subprocess.Popen[bytes]:
    (work / "caller.xml").write_text(caller_xml(int(hold * 1000)))
    cmd = ["sipp", "-sf", str(work / "caller.xml"), f"127.0.0.1:{port}", "-s", "bench"]
    cmd += ["-i", "127.0.0.1", "-nostdin", "-buff_size", "4194304"]
    cmd += ["-p", str(free_udp_port()), "-mp", str(free_udp_port())]
    cmd += ["-m", str(calls), "-r", str(rate), "-l", str(calls), "-timeout", str(int(hold))]
    return subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: The edge's ``--media-reserve``: new calls are refused while this many legs or fewer are free.
RESERVE = 20


def capacity_for(calls: int, rate: int) -> int:
    """Media legs for ``calls`` held calls placed at ``rate``: those, the reserve, 30 more,
    and two seconds of calls (the edge's estimate of the free legs subtracts the calls it
    admitted in the last two report periods, some of them already in the last report)."""
    return calls + 2 * rate + RESERVE + 30


def memory(
    calls: int,
    rate: int,
    settle: float = ANSWERS_EXPIRE,
    *,
    idle_rtp: str = "",
    overflow: int = 500,
) -> int:
    """``settle``: seconds between the two readings (64*T1 and a second: the stored answers
    have expired by the second one); ``idle_rtp``: the media node's ``--idle-rtp``
    (default keepalive); ``overflow``: INVITEs sent past the capacity (0: none)."""
    if not 1 <= calls <= MAX_CALLS:
        print(f"sessiond bench memory: --calls must be 1-{MAX_CALLS}", file=sys.stderr)
        return 2
    if rate < 1:
        print("sessiond bench memory: --rate must be at least 1", file=sys.stderr)
        return 2
    if idle_rtp not in ("", "send", "keepalive") or overflow < 0:
        print("sessiond bench memory: --idle-rtp send|keepalive, --overflow >= 0", file=sys.stderr)
        return 2
    policy = idle_rtp or "keepalive"
    first_port = 45000  # above the fixed RTP ranges of the tests (20000-30010, 22000-42000)
    legs = capacity_for(calls, rate)
    rtp_ports = f"{first_port}-{first_port + 2 * legs}"
    if missing_tool("memory", {"sipp": "sip-tester", "redis-server": "redis-server"}):
        return 2
    work = Path(tempfile.mkdtemp(prefix="sessiond-memory-"))
    try:
        system = start_sessiond(
            work,
            forward=False,
            rtp_ports=rtp_ports,
            namespace=NAMESPACE,
            extra=["--idle-rtp", policy, "--media-reserve", str(RESERVE)],
        )
    except PeerMissing as exc:
        print(f"sessiond bench memory: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    client = sync_redis.Redis.from_url(system.redis_url)
    caller = None
    try:
        base = read(client)
        setup = calls / rate + 60.0
        caller = _hold(system.port, calls, rate, setup + settle + 60.0, work)
        deadline = time.monotonic() + setup
        live = 0
        while time.monotonic() < deadline and caller.poll() is None:
            live = established(client)
            if live >= calls:
                break
            time.sleep(1.0)
        if live < calls:
            print(
                f"sessiond bench memory: only {live} of {calls} calls established", file=sys.stderr
            )
            return 1
        config = client.config_get("hash-max-listpack-value")
        print(
            f"{calls} answered calls held (sessiond run --redis, --answer auto, 1 worker,"
            f" --idle-rtp {policy}, {legs} media legs, --media-reserve {RESERVE};"
            f" Redis hash-max-listpack-value {config.get('hash-max-listpack-value')})"
        )
        media = [pid for pid, role in system.roles().items() if role == "media"]
        first = read(client)
        cpu0, wall0 = sum(cpu_seconds(p) for p in media), time.monotonic()
        time.sleep(settle)
        cpu = sum(cpu_seconds(p) for p in media) - cpu0
        wall = time.monotonic() - wall0
        later = read(client)
        report(calls, base, [("just answered", first), (f"after {settle:g} s", later)])
        details(client, calls)
        share = 100 * cpu / wall
        print(f"\nmedia node CPU holding them: {share:.1f} % of a core over {wall:.0f} s")
        if overflow:
            held = established_sids(client)
            took, admitted, lost = overflow_calls(system.port, overflow)
            still = established_sids(client)
            p50 = took[len(took) // 2] if took else 0.0
            print(
                f"{overflow} INVITEs past the capacity: {len(took)} answered 503"
                f" (p50 {1000 * p50:.0f} ms, max {1000 * max(took, default=0.0):.0f} ms),"
                f" {admitted} admitted (legs above the reserve), {lost} unanswered;"
                f" held calls still Established: {len(held & still)} of {len(held)}"
                f"{'' if caller.poll() is None else ' (the caller sipp exited)'}"
            )
    finally:
        if caller is not None:
            caller.kill()
            caller.wait()
        client.close()
        system.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0
