"""Find the bundled state tables and Lua scripts, installed or in a source checkout.

A wheel carries them inside the package (``sessiond/_bundled``); a source checkout keeps them
at the repository's top level (``state_tables/``, ``lua/``), two levels above the package.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # the sessiond package


def _bundled(name: str) -> Path:
    installed = _PKG / "_bundled" / name
    if installed.is_dir():
        return installed
    checkout = _PKG.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"bundled directory {name!r} not found next to {_PKG}")


def lua_dir() -> Path:
    return _bundled("lua")


def tables_dir() -> Path:
    return _bundled("state_tables")


def default_table_path() -> Path:
    return tables_dir() / "default.yaml"


def gateway_table_path() -> Path:
    """The B2BUA table (``gateway``) that Forward decisions run."""
    return tables_dir() / "gateway.yaml"


def bundled_table_paths() -> list[Path]:
    """The tables a process loads when given no ``--table``: default, then gateway."""
    return [default_table_path(), gateway_table_path()]
