"""The table language: loading, every kind of validation error with its line, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sessiond.cli.main import main
from sessiond.core.errors import TableError
from sessiond.core.resources import tables_dir
from sessiond.table import load_table, load_table_text
from sessiond.table.yamlsrc import load_yaml

GOOD = """\
table: t
initial: Idle
conditions: [a, b]
triggers:
  - when_all: [a, b]
    raise: Both
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
    state: Ringing
    event: MediaReady
    set: {a: true}
  - role: UAS
    state: Ringing
    event: AcceptCall
    set: {b: true}
  - role: UAS
    state: Ringing
    event: Both
    actions:
      - sip.respond: {code: 200, sdp: true}
    next: Done
  - role: UAS
    state: Ringing
    event: Late
    next: Done
"""


def problems(text: str) -> list[str]:
    with pytest.raises(TableError) as info:
        load_table_text(textwrap.dedent(text), "t.yaml")
    return info.value.problems


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_good_table_loads() -> None:
    table = load_table_text(GOOD, "t.yaml")
    assert table.initial == "Idle"
    assert set(table.states) == {"Idle", "Ringing", "Done"}
    assert table.timeout_events == {"Late"}


@pytest.mark.parametrize("path", sorted(tables_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_tables_are_valid(path: Path) -> None:
    load_table(path)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (replace("    state: Idle\n", "    state: Idel\n"), 13, "unknown state 'Idel'"),
        (replace("    event: Invite\n", "    event: Invit\n"), 12, "unknown event 'Invit'"),
        (replace("sip.respond: {code: 200, sdp: true}", "sip.answer"), 28, "unknown action"),
        (
            replace("sip.respond: {code: 200, sdp: true}", "sip.respond: {code: 1000}"),
            28,
            "code must be 101-699",
        ),
        (replace("    set: {a: true}\n", "    set: {c: true}\n"), 19, "unknown condition 'c'"),
        (
            replace("    next: Ringing\n", "    next: Ringing\n    when: [sdp_present]\n"),
            16,
            "unknown guard 'sdp_present'",
        ),
        (replace("    next: Ringing\n", "    next: Rnging\n"), 15, "unknown state 'Rnging'"),
        (
            GOOD + "  - role: UAS\n    state: Ringing\n    event: Late\n    next: Idle\n",
            34,
            "duplicate entry (UAS, Ringing, Late); first at line 30",
        ),
        (
            GOOD + "  - role: UAS\n    state: Done\n    event: Bye\n    next: Idle\n",
            34,
            "terminal state Done has a transition on Bye",
        ),
        (
            GOOD + "  - role: UAS\n    state: Done\n    event: Bye\n    actions: [sip.bye]\n",
            34,
            "only 'publish' (a notification) is allowed",
        ),
        (
            replace("  Done: {terminal: true}\n", "  Done: {}\n"),
            10,
            "non-terminal state Done has no",
        ),
        (
            replace("  Done: {terminal: true}\n", "  Done: {terminal: true}\n  Lost: {}\n"),
            11,
            "state Lost is unreachable",
        ),
        (replace("    raise: Both\n", "    raise: Bye\n"), 5, "produced by a component"),
        (replace("table: t\n", "table: t\ntable: u\n"), 2, "duplicate key 'table'"),
        (
            replace("  - role: UAS\n    state: Idle", "  - role: uas\n    state: Idle"),
            12,
            "role must be one of",
        ),
        (
            replace(
                "  Ringing: {timeout: {after: 5, event: Late}}",
                "  Ringing: {timeout: {after: -1, event: Late}}",
            ),
            9,
            "must be > 0",
        ),
    ],
    ids=[
        "unknown-state",
        "unknown-event",
        "unknown-action",
        "bad-action-args",
        "unknown-condition",
        "unknown-guard",
        "unknown-next",
        "duplicate-entry",
        "terminal-with-exit",
        "terminal-with-action",
        "no-exit",
        "unreachable",
        "raise-produced-event",
        "yaml-duplicate-key",
        "bad-role",
        "bad-timeout",
    ],
)
def test_error_names_the_line(text: str, line: int, fragment: str) -> None:
    found = problems(text)
    assert any(p.startswith(f"t.yaml:{line}: ") and fragment in p for p in found), found


def test_alternatives_without_distinguishing_guards() -> None:
    text = replace(
        "    event: Late\n    next: Done\n",
        "    event: Late\n    alternatives:\n      - when: [has_sdp]\n        next: Done\n"
        "      - when: [has_sdp]\n        next: Idle\n",
    )
    assert any(":36: " in p and "same guards" in p for p in problems(text)), problems(text)


def test_unguarded_alternative_must_be_last() -> None:
    text = replace(
        "    event: Late\n    next: Done\n",
        "    event: Late\n    alternatives:\n      - next: Done\n      - when: [has_sdp]\n"
        "        next: Idle\n",
    )
    assert any(":35: " in p and "unreachable alternative" in p for p in problems(text))


def test_every_problem_is_reported_at_once() -> None:
    text = replace("    state: Idle\n", "    state: Idel\n").replace("event: Late\n", "event: X\n")
    assert len(problems(text)) >= 2


def test_yes_no_on_off_stay_strings() -> None:
    doc = load_yaml("a: yes\nb: no\nc: on\nd: off\ne: true\n")
    assert doc == {"a": "yes", "b": "no", "c": "on", "d": "off", "e": True}


def test_yaml_syntax_error_names_the_line() -> None:
    found = problems("table: t\nstates:\n  A: {\n")
    assert found[0].startswith("t.yaml:4:") or found[0].startswith("t.yaml:3:"), found


def test_cli_check_ok_and_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(replace("    state: Idle\n", "    state: Idel\n"))
    assert main(["table", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["table", "check", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:13: unknown state 'Idel'" in err


def test_cli_graph_formats(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tables_dir() / "default.yaml")
    assert main(["table", "graph", path, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stateDiagram-v2")
    assert "Ringing --> Answering: UAS: ReadyToAnswer" in out
    assert main(["table", "graph", path, "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "default"')
    assert '"Terminated" [shape=doublecircle]' in out


def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sessiond", "table", "check", str(tables_dir() / "default.yaml")],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(Path(__file__).parents[2] / "service"), "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
