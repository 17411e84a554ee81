"""Session ids and the hash tag of a call: pure functions every layer may use.

A session id is ``<tag>-<12 hex>``; the tag (10 hex) is a hash of the Call-ID, so all keys of
the sessions of one call share a Redis Cluster slot (``{tag}``).
"""

from __future__ import annotations

import hashlib
import secrets

TAG_LEN = 10


def call_tag(call_id: str) -> str:
    """The hash tag shared by all keys of the sessions of one Call-ID."""
    return hashlib.blake2b(call_id.encode("utf-8", "surrogateescape"), digest_size=5).hexdigest()


def new_sid(call_id: str) -> str:
    return f"{call_tag(call_id)}-{secrets.token_hex(6)}"


def derived_sid(call_id: str, event_id: str) -> str:
    """The session id that the event starting a call (an initial INVITE) always gives. A
    retransmitted, replayed or reclaimed copy of that event (same id) finds the session it
    made, while the session's keys live (the ended TTL after the call ends), even though
    its registry entries were removed when the call ended."""
    seed = event_id.encode("utf-8", "surrogateescape")
    return f"{call_tag(call_id)}-{hashlib.blake2b(seed, digest_size=6).hexdigest()}"


def sid_tag(sid: str) -> str:
    tag = sid[:TAG_LEN]
    if len(sid) <= TAG_LEN + 1 or sid[TAG_LEN] != "-":
        raise ValueError(f"not a session id: {sid!r}")
    return tag
