"""``sessiond bench register``: one tiny step through a real edge and Redis of the bench's
own, then the sipp-alone ceiling. Figures are printed, never asserted (the machines are
shared): only that every REGISTER of the step got its 200 and the report is complete."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from sessiond.cli.bench.register import bench_register, uac_xml, users_file

needs_tools = pytest.mark.skipif(
    shutil.which("sipp") is None or shutil.which("redis-server") is None,
    reason="needs sipp and redis-server",
)


@needs_tools
@pytest.mark.timeout(120)
def test_one_tiny_step_and_the_ceiling(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_register([10], 1.0) == 0
    out = capsys.readouterr().out
    sessiond, _, alone = out.partition("ceiling:")
    # the step's row: 10/s asked, 0 failed; CPU columns edge, redis (by pid), sipp
    assert "CPU ms/REGISTER:    edge   redis    sipp" in sessiond, out
    assert re.search(r"^ +10 +[0-9.]+ +0 ", sessiond, re.MULTILINE), out
    assert "highest clean step through sessiond: 10 REGISTERs/s" in sessiond, out
    # the ceiling runs the same steps and two beyond (20, 40)
    assert re.search(r"^ +10 +[0-9.]+ +0 ", alone, re.MULTILINE), out
    assert "highest clean step of sipp alone: " in alone, out


def test_each_register_is_a_user_of_its_own(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "users.csv"
    users_file(path, 5, 3)
    assert path.read_text().splitlines() == ["SEQUENTIAL", "u5;", "u6;", "u7;"]
    scenario = uac_xml()
    assert scenario.count("[authentication]") == 1
    assert "From: <sip:[field0]@bench.example>" in scenario


def test_bad_rates_are_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sessiond", "bench", "register", "--rates", "fast"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "sessiond bench: --rates: expected positive integers, got 'fast'"
