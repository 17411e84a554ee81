"""Shared start-up for the atheris targets: import path, instrumentation, libFuzzer main."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "service"), str(ROOT / "fuzz")]

with atheris.instrument_imports(include=["sessiond", "contracts"]):
    import contracts  # noqa: E402


def main(test_one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


__all__ = ["contracts", "main"]
