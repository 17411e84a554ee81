"""The chaos suite's fixture (a fresh deployment per scenario, its own Redis with AOF) and
its summary table, printed at the end of every pytest run that ran a scenario (-q too).

Columns: legitimate calls placed; failed (any outcome but a completed call, a 503 without
Retry-After included); shed 503 (refused with 503 and Retry-After: the edge's documented
shedding, allowed only in the Redis-outage and flood scenarios); orphan legs; doubles (events
applied twice plus sessions beyond one per Call-ID); recovery (seconds from the fault's start
until a fresh call completes); the pytest outcome."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .deploy import Cluster, Deployment, RedisServer

HERE = Path(__file__).parent


@dataclass
class Row:
    nodeid: str
    scenario: str
    calls: int
    failed: int
    shed: int
    orphans: int
    doubles: int
    recovery: float


ROWS: list[Row] = []
OUTCOMES: dict[str, str] = {}


def record(row: Row) -> None:
    ROWS.append(row)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.redis)
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.outcome == "passed" else "xfailed"
        if report.when == "call" or report.nodeid not in OUTCOMES:
            OUTCOMES[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    tr = terminalreporter
    tr.write_sep("=", "chaos summary")
    head = (
        "scenario",
        "calls",
        "failed",
        "shed 503",
        "orphans",
        "doubles",
        "recovery s",
        "outcome",
    )
    lines = [head]
    for row in ROWS:
        rec = "-" if math.isinf(row.recovery) else f"{row.recovery:.1f}"
        outcome = OUTCOMES.get(row.nodeid, "?")
        cells = (row.scenario, row.calls, row.failed, row.shed, row.orphans, row.doubles, rec)
        cells += (outcome,)
        lines.append(tuple(str(c) for c in cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        tr.write_line("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deployment]:
    if shutil.which("sipp") is None or shutil.which("redis-server") is None:
        pytest.fail("the chaos suite needs sipp and redis-server (ops/test.sh installs them)")
    server = RedisServer(tmp_path)
    server.start()
    d = Deployment(Cluster(server.url, tmp_path), server)
    try:
        d.start_all()
        yield d
    finally:
        d.cluster.stop_all()
        if d.cluster._redis is not None:
            d.cluster._redis.close()
        server.stop()
