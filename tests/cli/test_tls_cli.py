"""TLS startup errors of the real CLI (``sessiond run`` and ``sessiond edge``): one line on
stderr naming the flag and the file, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ports import free_port
from tls_certs import Ca

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", *args],
        capture_output=True,
        text=True,
        timeout=40,
        env=ENV,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], prog: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"{prog}: ")
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = Ca(directory)
    good, other = ca.issue("server"), ca.issue("other")
    garbage = directory / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    unreadable = directory / "unreadable.key"
    unreadable.write_bytes(good.key.read_bytes())
    unreadable.chmod(0)
    return {
        "cert": good.cert,
        "key": good.key,
        "other_key": other.key,
        "garbage": garbage,
        "unreadable": unreadable,
        "missing": directory / "missing.crt",
    }


@pytest.mark.parametrize("prog", ["run", "edge"])
def test_tls_startup_errors_name_the_flag_and_the_file(prog: str, files: dict[str, Path]) -> None:
    listen = ["--listen", f"tls:127.0.0.1:{free_port()}"]
    store = ["--redis", "redis://127.0.0.1:1/0"] if prog == "edge" else ["--store-port", "0"]
    cases = [
        ([], "--listen tls:... needs --tls-cert and --tls-key"),
        (["--tls-cert", str(files["cert"])], "--tls-cert needs --tls-key"),
        (
            ["--tls-cert", str(files["missing"]), "--tls-key", str(files["key"])],
            f"--tls-cert {files['missing']}: No such file or directory",
        ),
        (
            ["--tls-cert", str(files["cert"]), "--tls-key", str(files["other_key"])],
            f"--tls-key {files['other_key']}: does not match the certificate of --tls-cert",
        ),
        (
            ["--tls-cert", str(files["garbage"]), "--tls-key", str(files["key"])],
            f"--tls-cert {files['garbage']}: no PEM certificate",
        ),
        (
            ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
            + ["--tls-ca", str(files["garbage"])],
            f"--tls-ca {files['garbage']}: no PEM certificate",
        ),
        (
            ["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
            + ["--tls-verify-client"],
            "--tls-verify-client needs --tls-ca",
        ),
    ]
    if os.geteuid() != 0:  # root reads a file whatever its mode
        cases.append(
            (
                ["--tls-cert", str(files["cert"]), "--tls-key", str(files["unreadable"])],
                f"--tls-key {files['unreadable']}: Permission denied",
            )
        )
    for flags, expected in cases:
        line = one_line_error(cli(prog, *store, *listen, *flags), f"sessiond {prog}")
        assert expected in line, (flags, line)
