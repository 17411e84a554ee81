"""Tables that share: ``include:`` merging, its override rule, errors that name the included
file and line, revisions through includes, the self-contained published source, and
``sessiond table check --expanded`` as a user runs it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sessiond.core.errors import TableError
from sessiond.core.resources import default_table_path, gateway_table_path, tables_dir
from sessiond.store import Keys
from sessiond.store.tableset import TableSet
from sessiond.table import Table, load_table, load_table_text
from sessiond.table.model import Timeout
from sessiond.table.yamlsrc import Line
from sessiond_run import ENV

ROOT = Path(__file__).resolve().parents[2]

PART = """\
conditions: [a]
states:
  Idle: {}
  Ringing: {timeout: {after: 5, event: Late}}
  Done: {terminal: true}
transitions:
  - role: UAS
    state: Idle
    event: Invite
    next: Ringing
  - role: UAS
    state: [Ringing, Idle]
    event: [Late, Cancel]
    next: Done
"""

TABLE = """\
table: t
initial: Idle
include: parts/base.yaml
transitions:
  - role: UAS
    state: Ringing
    event: Cancel
    actions: [sip.bye]
    next: Done
"""


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(textwrap.dedent(text))


def problems(path: Path) -> list[str]:
    with pytest.raises(TableError) as info:
        load_table(path)
    return info.value.problems


def meaning(table: Table) -> dict[str, Any]:
    """What the engine reads of a table: all but line numbers and descriptions."""
    return {
        "start": (table.name, table.version, table.initial, sorted(table.conditions)),
        "states": {n: (s.terminal, s.timeout) for n, s in table.states.items()},
        "triggers": [(t.conditions, t.event) for t in table.triggers],
        "entries": {
            key: (
                e.ignore,
                [
                    (tuple(map(str, a.guards)), a.action_text, a.next, a.conditions)
                    + (a.publish, a.raises)
                    for a in e.alternatives
                ],
            )
            for key, e in table.entries.items()
        },
    }


def test_include_merges_and_the_including_entry_replaces(tmp_path: Path) -> None:
    write(tmp_path, {"parts/base.yaml": PART, "t.yaml": TABLE})
    table = load_table(tmp_path / "t.yaml")
    assert set(table.states) == {"Idle", "Ringing", "Done"}
    assert table.conditions == {"a"}
    assert table.timeout_events == {"Late"}
    # (UAS, Ringing, Cancel) is the including file's; the rest of the listed entry stays
    replaced = table.entries[("UAS", "Ringing", "Cancel")]
    assert [a.action_text for a in replaced.alternatives] == [("sip.bye",)]
    assert isinstance(replaced.line, Line)  # a line that names its file
    assert (replaced.line, replaced.line.file) == (5, str(tmp_path / "t.yaml"))
    kept = {k for k in table.entries if k[2] in ("Late", "Cancel")} - {("UAS", "Ringing", "Cancel")}
    assert kept == {("UAS", "Ringing", "Late"), ("UAS", "Idle", "Late"), ("UAS", "Idle", "Cancel")}
    assert table.entries[("UAS", "Idle", "Late")].line == 11


def test_a_state_declared_again_replaces_the_included_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "parts/base.yaml": PART,
            "t.yaml": TABLE + "states:\n  Ringing: {timeout: {after: 9, event: Late}}\n",
        },
    )
    table = load_table(tmp_path / "t.yaml")
    assert table.states["Ringing"].timeout == Timeout(9.0, "Late")


def test_a_bundled_table_by_name(tmp_path: Path) -> None:
    """A user's table: the default table, with one entry of its own replacing default's."""
    write(
        tmp_path,
        {
            "mine.yaml": """\
            table: mine
            include: default
            transitions:
              - role: UAS
                state: Ringing
                event: RingTimeout
                actions:
                  - sip.respond: {code: 486}
                  - media.destroy
                  - end: {code: 486, reason: busy after ringing}
                next: Terminated
            """
        },
    )
    mine, default = load_table(tmp_path / "mine.yaml"), load_table(default_table_path())
    assert mine.initial == default.initial == "Idle"
    assert mine.entries.keys() == default.entries.keys()
    ring = mine.entries[("UAS", "Ringing", "RingTimeout")].alternatives[0]
    assert ring.action_text[0] == "sip.respond(code=486)"
    ours, theirs = meaning(mine)["entries"], meaning(default)["entries"]
    assert {k for k in theirs if ours[k] != theirs[k]} == {("UAS", "Ringing", "RingTimeout")}


def test_include_cycle_names_the_include_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "t.yaml": TABLE.replace("parts/base.yaml", "a.yaml"),
            "a.yaml": "conditions: []\ninclude: [parts/base.yaml, t.yaml]\n",
            "parts/base.yaml": PART,
        },
    )
    found = problems(tmp_path / "t.yaml")
    assert found == [f"{tmp_path / 'a.yaml'}:2: include cycle: t.yaml -> a.yaml -> t.yaml"]


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("next: Ringing", "next: Rnging", 10, "unknown state 'Rnging'"),  # the loader
        ("next: Ringing", "next: Ringing\n    actions: [sip.answer]", 11, "unknown action"),
        ("  Done: {terminal: true}", "  Done: {terminal: true}\n  Lost: {}", 6, "unreachable"),
        ("    event: Invite", "    event: Invite\n    event: Bye", 10, "duplicate key"),  # YAML
    ],
    ids=["entry", "action", "whole-table", "yaml"],
)
def test_an_error_in_an_included_file_names_it(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    write(tmp_path, {"parts/base.yaml": PART.replace(old, new), "t.yaml": TABLE})
    found = problems(tmp_path / "t.yaml")
    where = f"{tmp_path / 'parts' / 'base.yaml'}:{line}: "
    assert any(p.startswith(where) and fragment in p for p in found), found


def test_a_missing_include_names_the_including_line(tmp_path: Path) -> None:
    write(tmp_path, {"t.yaml": TABLE.replace("parts/base.yaml", "parts/nothere.yaml")})
    [problem] = problems(tmp_path / "t.yaml")
    assert problem.startswith(f"{tmp_path / 't.yaml'}:3: cannot read include 'parts/nothere.yaml'")


def test_two_unrelated_files_may_not_define_one_entry(tmp_path: Path) -> None:
    other = "transitions:\n  - role: UAS\n    state: Idle\n    event: Invite\n    next: Done\n"
    write(
        tmp_path,
        {
            "parts/base.yaml": PART,
            "other.yaml": other,
            "t.yaml": TABLE.replace("parts/base.yaml", "[parts/base.yaml, other.yaml]"),
        },
    )
    [problem] = problems(tmp_path / "t.yaml")
    assert problem.startswith(f"{tmp_path / 'other.yaml'}:2: entry ('UAS', 'Idle', 'Invite')")
    assert f"also at {tmp_path / 'parts' / 'base.yaml'}:7" in problem


def test_one_file_still_may_not_define_an_entry_twice(tmp_path: Path) -> None:
    twice = TABLE + "  - role: UAS\n    state: Ringing\n    event: Cancel\n    next: Idle\n"
    write(tmp_path, {"parts/base.yaml": PART, "t.yaml": twice})
    found = problems(tmp_path / "t.yaml")
    assert any(p.startswith(f"{tmp_path / 't.yaml'}:10: duplicate entry") for p in found), found


def test_revision_follows_the_included_files(tmp_path: Path) -> None:
    write(tmp_path / "a", {"parts/base.yaml": PART, "t.yaml": TABLE})
    before = load_table(tmp_path / "a" / "t.yaml")
    (tmp_path / "a" / "parts" / "base.yaml").write_text(PART.replace("after: 5", "after: 6"))
    after = load_table(tmp_path / "a" / "t.yaml")
    assert after.rev != before.rev
    # the same files elsewhere: the same revision (no directory in what it hashes)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_table(tmp_path / "b" / "t.yaml").rev == after.rev
    # a table without includes keeps its revision: the hash of its own text
    counter = ROOT / "tests" / "tables" / "counter.yaml"
    assert load_table(counter).rev == hashlib.sha256(counter.read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("path", [default_table_path(), gateway_table_path()], ids=["d", "g"])
def test_the_source_is_self_contained(path: Path) -> None:
    """The published source has no include left and compiles to the same table."""
    table = load_table(path)
    assert "include:" not in table.source
    again = load_table_text(table.source, "redis:stored")
    assert again.rev == table.rev
    assert meaning(again) == meaning(table)


async def test_a_worker_loads_an_old_revision_without_the_files(
    tmp_path: Path, backend: tuple[str, Any, Keys]
) -> None:
    _, client, keys = backend
    write(tmp_path, {"parts/base.yaml": PART, "t.yaml": TABLE})
    old = load_table(tmp_path / "t.yaml")
    await TableSet([old], client, keys).publish()
    shutil.rmtree(tmp_path / "parts")  # the included file is gone from this machine
    worker = TableSet([load_table(default_table_path())], client, keys)
    found = await worker.for_session({"sid": "s", "table": "t", "table_rev": old.rev})
    assert meaning(found) == meaning(old)


def test_bundled_parts_are_not_tables() -> None:
    """parts/ holds what tables include; `table check state_tables/*.yaml` skips them."""
    assert sorted(p.name for p in tables_dir().glob("*.yaml")) == ["default.yaml", "gateway.yaml"]
    assert (tables_dir() / "parts" / "dialog.yaml").is_file()


def test_cli_check_expanded(tmp_path: Path) -> None:
    write(tmp_path, {"parts/base.yaml": PART, "t.yaml": TABLE})
    run = [sys.executable, "-m", "sessiond", "table", "check", "--expanded"]
    run.append(str(tmp_path / "t.yaml"))

    def expand() -> subprocess.CompletedProcess[str]:
        return subprocess.run(run, capture_output=True, text=True, env=ENV, timeout=60, check=False)

    proc = expand()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("# t.yaml with parts/base.yaml merged in")
    assert "  Ringing: {timeout: {after: 5, event: Late}}  # parts/base.yaml:4\n" in out
    assert "  # t.yaml:5\n  - role: UAS\n    state: Ringing\n    event: Cancel\n" in out
    (tmp_path / "expanded.yaml").write_text(out)
    assert load_table(tmp_path / "expanded.yaml").rev == load_table(tmp_path / "t.yaml").rev
    # an error in the included file: exit 1, the file and line on stderr, nothing expanded
    (tmp_path / "parts" / "base.yaml").write_text(PART.replace("next: Ringing", "next: Nowhere"))
    proc = expand()
    assert (proc.returncode, proc.stdout) == (1, "")
    assert f"{tmp_path / 'parts' / 'base.yaml'}:10: unknown state 'Nowhere'" in proc.stderr
