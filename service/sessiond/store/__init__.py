"""The Redis layer: every Redis call sessiond makes goes through here.

``keys`` (key names, group names, caps), ``client`` (connecting), ``round`` (one round trip
of commands), ``scripts`` and ``store`` (the session store: Lua scripts and their wrappers),
``consumer`` (a consumer group member: acks with the next read, backlog, claim, seen ids),
``streams`` (riding out outages), ``liveness`` (heartbeat, drain, judging heartbeats),
``legs`` (media nodes' records), ``queries`` (reads for ctl and the Client API).
"""

from sessiond.core.ids import call_tag, new_sid
from sessiond.store.keys import Keys
from sessiond.store.store import ApplyResult, CreateResult, Store

__all__ = ["ApplyResult", "CreateResult", "Keys", "Store", "call_tag", "new_sid"]
