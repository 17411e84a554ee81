"""``sessiond bench peers``: the smallest load end to end against sessiond answering and
against one peer (Kamailio, else sippy) when installed; the table's rows and summary, never
its timings (the machines are shared). And ``bench memory`` on 10 held calls."""

from __future__ import annotations

import re
import shutil

import pytest

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
    assert memory(10, 20, settle=0.5) == 0
    out = capsys.readouterr().out
    assert "10 answered calls held" in out
    for name in ("session", "history", "applied", "dialog", "initial", "media", "media-owner"):
        row = re.search(rf"^{name} +([0-9.]+) +(-?\d+) +([0-9.]+) +(-?\d+)$", out, re.MULTILINE)
        assert row, out
        assert row.group(1) == "1.00"  # one key of this family per answered call
        assert int(row.group(2)) > 0
    assert re.search(r"^all keys +[0-9.]+ +\d+", out, re.MULTILINE), out
    assert re.search(r"^INFO used_memory +-?\d+ +-?\d+$", out, re.MULTILINE), out
    assert "encodings: " in out
