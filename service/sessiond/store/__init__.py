"""The Redis session store: key names, Lua scripts and their typed Python wrappers."""

from sessiond.store.keys import Keys, call_tag, new_sid
from sessiond.store.store import ApplyResult, CreateResult, Store

__all__ = ["ApplyResult", "CreateResult", "Keys", "Store", "call_tag", "new_sid"]
