"""``sessiond bench cps``: one short step end to end (sipp against ``sessiond run --redis``),
and the cgroup cap that makes the workers the bottleneck. Figures are printed, never
asserted (the machines are shared)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from sessiond.cli.bench.cps import cap_cpu, cps, uncap


def _can_cap() -> bool:
    try:
        uncap(cap_cpu(None, 1.0, f"sessiond-test-probe-{uuid.uuid4().hex[:6]}"))
    except OSError:
        return False
    return True


needs_cgroups = pytest.mark.skipif(not _can_cap(), reason="no writable cgroup cpu controller")


@needs_cgroups
def test_a_capped_process_sits_in_its_own_group_until_it_exits() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    group = cap_cpu(proc.pid, 0.25)
    try:
        assert str(proc.pid) in (group / "cgroup.procs").read_text().split()
        if (group / "cpu.max").exists():
            assert (group / "cpu.max").read_text().split() == ["25000", "100000"]
        else:
            assert (group / "cpu.cfs_quota_us").read_text().strip() == "25000"
            assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
    finally:
        proc.kill()
        proc.wait()
        uncap(group)
    assert not group.exists()


@needs_cgroups
@pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp")
def test_one_step_with_capped_workers(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cps(redis_url, [1], [20], 1.0, worker_cpu=0.5) == 0
    out = capsys.readouterr().out
    assert "each worker process capped at 0.5 of a core (1 capped)" in out
    # the step's row: 20 calls/s asked, 0 failed (how fast it went is not a test's business)
    assert re.search(r"^ +20 +[0-9.]+ +0 ", out, re.MULTILINE), out
    assert "highest rate with 0 failed calls: " in out
    # every group the bench made is gone again
    leftover = [p.name for p in Path("/sys/fs/cgroup").rglob("sessiond-bench-*")]
    assert leftover == []
