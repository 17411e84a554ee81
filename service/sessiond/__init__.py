"""sessiond: a Redis-backed distributed SIP session service driven by state tables.

The call-control API (``SimplePeer``, ``Client``, the events and errors) is importable from
here; it is loaded on first use, so the service processes do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sessiond.api import *  # noqa: F403  (what __getattr__ returns, for type checkers)
    from sessiond.api import __all__ as __all__


def __getattr__(name: str) -> Any:
    """Load :mod:`sessiond.api` on first use of one of its names (``sessiond.api.__all__``,
    all class names), so looking up a submodule (lower case) never loads it."""
    if name == "__all__" or name[:1].isupper():
        from sessiond import api

        if name == "__all__":
            return api.__all__
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'sessiond' has no attribute {name!r}")
