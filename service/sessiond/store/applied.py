"""Which events a session has applied: short digests in its session hash's field ``applied``.

A redelivered event (its worker died before acknowledging it) must not be applied twice, so
every transition records its event id; ``create.lua`` and ``transition.lua`` refuse an event
whose record is there. The record is the first 48 bits of the event id's SHA-1 in URL-safe
base64 (8 characters), kept space-separated in the session hash's field ``applied`` (newest
last): 9 bytes per event
inside the session hash, where a hash of its own per call cost ~360 bytes for an answered
call (4 events). Past :data:`APPLIED_KEEP` markers the oldest moves, one per transition, to
``{T}:applied:<sid>`` (digest -> ``""``, with the session's TTL), so every event stays refused
for the session's life however long the call: a call with few events has no such key.
Readers see the ids in the history lines; ``python3 -c 'from sessiond.store.applied
import digest; print(digest("<event id>"))'`` gives an id's marker.

An older sessiond kept every marker in ``{T}:applied:<sid>`` as event id -> ``""`` (older
still, the outbox itself): the scripts and :meth:`~sessiond.store.store.Store.read_many`
still look there, for the calls such a sessiond started.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

FIELD = "applied"
DIGEST_LEN = 8
#: Markers kept in the session hash (the newest): 575 bytes at most, under the deployment's
#: ``hash-max-listpack-value`` 1024.
APPLIED_KEEP = 64


def digest(event_id: str) -> str:
    """The marker of ``event_id`` (what ``lua/transition.lua`` looks for)."""
    data = event_id.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(hashlib.sha1(data, usedforsecurity=False).digest()[:6]).decode()


def was_applied(session: Mapping[str, str], event_id: str) -> bool:
    """Whether the session (as read) records ``event_id`` as applied."""
    return digest(event_id) in session.get(FIELD, "").split(" ")
