"""``sessiond bench peers``: the smallest load end to end against sessiond answering and
against one peer (Kamailio, else sippy) when installed; the table's rows and summary, never
its timings (the machines are shared). And ``bench memory`` on 10 held calls."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from sessiond.cli.bench import peer_systems
from sessiond.cli.bench.dialog_sipp import run_step
from sessiond.cli.bench.memory import family, memory
from sessiond.cli.bench.peer_systems import why_missing
from sessiond.cli.bench.peers import peers
from sessiond.cli.main import main

needs_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None or shutil.which("redis-server") is None,
    reason="needs sipp and redis-server",
)
_PEER = next((p for p in ("kamailio", "sippy") if why_missing(p) is None), None)


def _row(out: str, system: str) -> re.Match[str] | None:
    """The step row: system, round 1, rate 20, ok, failed, verdict, CPU ms per call, then by
    process."""
    pattern = rf"^{system} +1 +20 +(\d+) +(\d+) +(pass|slow|FAIL) +([0-9.]+) .*   (.+)$"
    return re.search(pattern, out, re.MULTILINE)


def _summary(out: str, system: str) -> re.Match[str] | None:
    return re.search(rf"^{system} +(\d+) +([0-9.]+) ", out.split("summary", 1)[1], re.MULTILINE)


def _check(out: str, system: str, processes: set[str]) -> None:
    row = _row(out, system)
    assert row, out
    ok, failed, verdict, cpu, split = row.groups()
    assert (int(ok), int(failed)) == (20, 0), out
    assert verdict in ("pass", "slow")  # slow: setup delays on a busy machine
    assert float(cpu) >= 0  # /proc counts in 10 ms ticks: 20 calls of Kamailio may be 0
    # the CPU is split by the system's own processes (and its one redis-server)
    assert {part.split()[0] for part in re.findall(r"[a-z-]+ [0-9.]+", split)} == processes
    summary = _summary(out, system)
    assert summary, out
    assert summary.group(1) == ("20" if verdict == "pass" else "0")  # highest clean step


@needs_sipp
def test_sessiond_answering_side_by_side_with_a_peer(capsys: pytest.CaptureFixture[str]) -> None:
    systems = "sessiond-answer" + (f",{_PEER}" if _PEER else "")
    assert peers(systems, [20], 1.0, 1, 0.5, do_install=False) == 0
    out = capsys.readouterr().out
    _check(out, "sessiond-answer", {"edge", "worker", "media", "redis"})
    if _PEER is None:
        pytest.skip("kamailio and sippy are not installed (sessiond bench peers --install)")
    _check(out, _PEER, {_PEER})


def test_an_unknown_system_is_one_line_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "peers", "--systems", "asterisk"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--systems: unknown asterisk" in err


def test_a_missing_peer_is_one_line_naming_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(peer_systems, "sippy_binary", lambda: None)
    assert main(["bench", "peers", "--systems", "sippy,sippy"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "sessiond bench peers: sippy: sippy is not installed (pip install sippy==2.5.0); "
        "run with --install\n"
    )


def test_bad_rates_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "peers", "--rates", "20,fast"]) == 2
    assert "--rates: expected positive integers" in capsys.readouterr().err


def test_memory_families_follow_the_key_names() -> None:
    tag = "0123456789"
    sid = f"{tag}-abcdefabcdef"
    assert family(f"mem:{{{tag}}}:session:{sid}") == "session"
    assert family(f"mem:{{{tag}}}:history:{sid}") == "history"
    assert family(f"mem:{{{tag}}}:applied:{sid}") == "applied"
    assert family(f"mem:{{{tag}}}:dialog:ltag:call@host") == "dialog"
    assert family(f"mem:{{{tag}}}:media-owner:{sid}.m") == "media-owner"
    assert family("mem:{p3}:events") == "partition events"
    assert family("mem:{p3}:timers") == "partition timers"
    assert family("mem:{edge:e1}:commands") == "edge commands"
    assert family("mem:{media}:commands") == "media commands"
    assert family("mem:{media:m1}:legs") == "media legs"
    assert family("mem:{app}:events") == "app events"
    assert family("mem:{leases}:p3") == "leases"
    assert family("mem:answered:127.0.0.1:5060:z9hG4bK1:INVITE") == "answered"


@needs_sipp
def test_memory_per_call_by_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert memory(10, 20, settle=0.5, overflow=100) == 0
    out = capsys.readouterr().out
    assert "10 answered calls held" in out
    for name in ("session", "history", "dialog", "initial", "media-owner"):
        row = re.search(rf"^{name} +([0-9.]+) +(-?\d+) +([0-9.]+) +(-?\d+)$", out, re.MULTILINE)
        assert row, out
        assert row.group(1) == "1.00"  # one key of this family per answered call
        assert int(row.group(2)) > 0
    for name in ("applied", "media"):  # markers in the session hash; no media registry entry
        row = re.search(rf"^{name} +([0-9.]+) ", out, re.MULTILINE)
        assert row is None or row.group(1) == "0.00", out
    assert re.search(r"^media node CPU holding them: [0-9.]+ % of a core", out, re.MULTILINE)
    # 100 legs (10 calls, 2 s at 20/s, the reserve 20 and 30): the tier fills, then 503s
    over = re.search(r"100 INVITEs past the capacity: (\d+) answered 503 .* (\d+) admitted", out)
    assert over, out
    assert int(over.group(1)) > 0
    assert int(over.group(1)) + int(over.group(2)) == 100
    assert "held calls still Established: 10 of 10" in out
    assert re.search(r"^all keys +[0-9.]+ +\d+", out, re.MULTILINE), out
    assert re.search(r"^INFO used_memory +-?\d+ +-?\d+$", out, re.MULTILINE), out
    assert "encodings: " in out


class _ReorderingCallee:
    """A callee that answers 200 (Record-Route, a Contact with a display name) and only then
    180, as a proxy's receivers or a loaded B2BUA reorder them; answers BYE; keeps what it
    got."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg = data.decode()
            self.received.append(msg)
            lines = {line.split(":", 1)[0].lower(): line for line in msg.split("\r\n")}
            base = "\r\n".join(lines[h] for h in ("via", "from", "to", "call-id", "cseq"))
            if msg.startswith("INVITE"):
                base = base.replace(lines["to"], lines["to"] + ";tag=callee")
                sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                sdp += "m=audio 9 RTP/AVP 0\r\n"
                ok = (
                    f"SIP/2.0 200 OK\r\n{base}\r\nRecord-Route: <sip:127.0.0.1:{self.port};lr>\r\n"
                    f'Contact: "Anonymous" <sip:callee@127.0.0.1:{self.port}>\r\n'
                    f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
                )
                self.sock.sendto(ok.encode(), addr)
                time.sleep(0.005)
                ringing = f"SIP/2.0 180 Ringing\r\n{base}\r\nContent-Length: 0\r\n\r\n"
                self.sock.sendto(ringing.encode(), addr)
            elif msg.startswith("BYE"):
                ok = f"SIP/2.0 200 OK\r\n{base}\r\nContent-Length: 0\r\n\r\n"
                self.sock.sendto(ok.encode(), addr)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp")
def test_the_caller_follows_the_dialog_and_absorbs_a_late_180(tmp_path: Path) -> None:
    callee = _ReorderingCallee()
    try:
        step = run_step(callee.port, 10, 1.0, 0.3, tmp_path)
    finally:
        callee.close()
    assert (step.ok, step.failed) == (10, 0)
    in_dialog = [m for m in callee.received if m.startswith(("ACK", "BYE"))]
    assert len(in_dialog) == 20
    for msg in in_dialog:
        # to the Contact's URI (no display name), through the route set of the 200
        assert msg.split(" ", 2)[1] == f"sip:callee@127.0.0.1:{callee.port}"
        assert f"Route: <sip:127.0.0.1:{callee.port};lr>" in msg
        assert "transport=UDP" not in msg
