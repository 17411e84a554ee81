"""``--register``/``--ping``/``--credentials`` are checked before anything starts: a bad
credentials file names its file and line, a bad URI names its option."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiond.cli.main import main


def edge(*extra: str) -> list[str]:
    return ["edge", "--redis", "redis://127.0.0.1:1/0", "--listen", "udp:127.0.0.1:0", *extra]


def test_bad_credentials_file_is_refused_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "creds"
    creds.write_text("user=alice password=ok\n# fine\nalice secret\n")
    assert main(edge("--credentials", str(creds), "--register", "sip:alice@127.0.0.1")) == 2
    assert f"{creds}:3: expected user=NAME password=SECRET [realm=REALM]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--register", "sip:127.0.0.1:5070"], "an address-of-record needs a user"),
        (["--register", "sip:a@127.0.0.1;transport=tcp"], "the edge does not listen on TCP"),
        (["--ping", "mailto:x@y"], "--ping mailto:x@y: not a SIP URI"),
        (["--register", "sip:a@h", "--register-expires", "0"], "at least 1 second"),
    ],
)
def test_unusable_register_and_ping_options_are_refused(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(edge(*option)) == 2
    assert message in capsys.readouterr().err
