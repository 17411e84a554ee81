"""Load the Lua scripts in ``lua/`` once and call them by SHA.

redis-py's ``Script`` sends EVALSHA and, on NOSCRIPT (a restarted or failed-over Redis),
loads the script again and retries, which is exactly the behaviour we want; this module only
adds the one-file-per-operation convention and checks each file has its header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessiond.core.resources import lua_dir

NAMES = ("create", "transition", "unmap", "pop_timers", "lease")


@dataclass(frozen=True)
class Scripts:
    create: Any
    transition: Any
    unmap: Any
    pop_timers: Any
    lease: Any


def source(name: str) -> str:
    text = (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
    if "KEYS[" not in text.split("\n\n", 1)[0] and "-- KEYS" not in text:
        raise ValueError(f"lua/{name}.lua has no KEYS/ARGV header")
    return text


def register(redis: Any) -> Scripts:
    """Register every script on a client (async or sync redis-py, or fakeredis)."""
    return Scripts(**{name: redis.register_script(source(name)) for name in NAMES})


def script(redis: Any, name: str) -> Any:
    """One script (``lua/<name>.lua``) registered on ``redis``: call it with keys and args."""
    return redis.register_script(source(name))
