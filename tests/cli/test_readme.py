"""Every Python block of README.md runs as written, so the README cannot rot.

How a block is run (what the README states next to it):

- A section whose text says "body of an `async def main()`" has every Python block of it
  run as the body of ``async def main()`` with ``asyncio.run(main())``; a block elsewhere
  runs as a plain script. Each block is its own process (``python file.py``, the worktree's
  ``service/`` on PYTHONPATH), as a reader would run it.
- Ports: every ``port=N`` in a section, and the same N wherever it appears in that section
  (``sip:bob@127.0.0.1:N``), is replaced by one free port, so the test binds no fixed port.
- Redis: a ``redis://...`` URL in a block is replaced by the test Redis (SESSIOND_TEST_REDIS).
- Counterparts: a block that waits for a call (``incoming_call``) is started first; the
  other blocks of its section run once its port answers SIP. Every block must exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.helpers import free_udp_port
from sessiond_run import ENV, wait_listening

REDIS_URL = os.environ.get("SESSIOND_TEST_REDIS", "redis://127.0.0.1:6379/15")
README = Path(__file__).resolve().parents[2] / "README.md"
WRAPPER_NOTE = "body of an `async def main()`"
QUICK_START = "Quick start"
MAX_QUICK_START_LINES = 5


@dataclass(frozen=True)
class Block:
    section: str  # the ``## `` heading it is under
    line: int  # README line of its first code line
    code: str
    wrapped: bool  # body of ``async def main()``


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks, with their section and whether the section states the wrapper."""
    sections: list[tuple[str, list[tuple[int, str]]]] = [("", [])]
    notes: dict[str, str] = {"": ""}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
            notes[line[3:].strip()] = ""
        elif line.strip() == "```python":
            start = i + 1
            i += 1
            while lines[i].strip() != "```":
                i += 1
            sections[-1][1].append((start + 1, "\n".join(lines[start:i]) + "\n"))
        else:
            notes[sections[-1][0]] += line + "\n"
        i += 1
    return [
        Block(name, line, code, WRAPPER_NOTE in " ".join(notes[name].split()))
        for name, blocks in sections
        for line, code in blocks
    ]


def runnable(block: Block, ports: dict[str, str]) -> str:
    """The block as a script: ports and Redis URL substituted, wrapped if the README says so."""
    code = block.code
    for old, new in ports.items():
        code = re.sub(rf"(?<=[=:]){old}\b", new, code)
    code = re.sub(r"redis://[^\s\"')]+", REDIS_URL, code)
    if not block.wrapped:
        return code
    body = textwrap.indent(code, "    ")
    return f"import asyncio\n\n\nasync def main():\n{body}\n\nasyncio.run(main())\n"


def test_the_readme_has_python_blocks_and_the_quick_start_ones_are_short() -> None:
    blocks = python_blocks(README.read_text())
    quick = [b for b in blocks if b.section.startswith(QUICK_START)]
    assert len(quick) >= 2, "the quick start lost its Python blocks"
    assert all(b.wrapped for b in quick), "the quick start must say how its blocks run"
    for block in quick:
        lines = block.code.strip().splitlines()
        assert len(lines) <= MAX_QUICK_START_LINES, f"README.md:{block.line}: {len(lines)} lines"


def test_substitutions() -> None:
    block = Block("s", 1, 'P(port=5070, u="sip:b@h:5070", r="redis://h:6379/0")\n', False)
    assert runnable(block, {"5070": "40001"}) == (
        f'P(port=40001, u="sip:b@h:40001", r="{REDIS_URL}")\n'
    )


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path: Path) -> None:
    by_section: dict[str, list[Block]] = {}
    for block in python_blocks(README.read_text()):
        by_section.setdefault(block.section, []).append(block)
    for section, blocks in by_section.items():
        ports = {
            port: str(free_udp_port())
            for block in blocks
            for port in re.findall(r"\bport=(\d+)", block.code)
        }
        listeners = [b for b in blocks if "incoming_call(" in b.code]
        others = [b for b in blocks if b not in listeners]
        procs: list[tuple[Block, subprocess.Popen[str]]] = []
        try:
            for block in listeners + others:
                if block is (others or [None])[0]:  # the counterparts are up before the rest
                    for listener in listeners:
                        (port,) = re.findall(r"\bport=(\d+)", listener.code)
                        wait_listening(int(ports[port]), timeout=30)
                path = tmp_path / f"readme_{block.line}.py"
                path.write_text(runnable(block, ports))
                proc = subprocess.Popen(
                    [sys.executable, str(path)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=ENV,
                    cwd=tmp_path,
                )
                procs.append((block, proc))
            deadline = time.monotonic() + 90
            for block, proc in procs:
                try:
                    out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
                    pytest.fail(f"README.md:{block.line} ({section}) did not finish:\n{out}")
                assert proc.returncode == 0, f"README.md:{block.line} ({section}) failed:\n{out}"
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
