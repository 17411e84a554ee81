"""Which session an event belongs to, and what a new call becomes. Pure: no I/O.

Edge events describe a SIP message with plain fields (see docs/architecture.md, "Edge
events"): ``kind`` (request/response), ``call_id``, ``from_tag``, ``to_tag`` and so on.
For a request from the far end our tag is the To tag; for a response to our request it is
the From tag. A request without a To tag (an initial INVITE, its retransmissions, CANCEL)
is matched on the far end's From tag through the ``initial`` registry entry.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Literal

from sessiond.core.ids import derived_sid
from sessiond.core.messages import Respond
from sessiond.core.types import Event
from sessiond.store.keys import Keys
from sessiond.worker.applier import NewSession

AnswerMode = Literal["auto", "reject", "app"]

# Requests the far end expects an answer to, when no session can take them.
NO_ANSWER_NEEDED = frozenset({"Ack", "Cancel"})  # the edge answers CANCEL itself


def registry_key(keys: Keys, event: Event) -> str:
    """The registry entry that maps this event to its session ("" when it has none)."""
    data = event.data
    call_id = data.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        return ""
    if "media_id" in data and not event.sid:
        return keys.media(str(data["media_id"]))
    if data.get("kind") == "response":
        return keys.dialog(call_id, str(data.get("from_tag", "")))
    if data.get("to_tag"):
        return keys.dialog(call_id, str(data["to_tag"]))
    return keys.initial(call_id, str(data.get("from_tag", "")))


def replaced_dialog(keys: Keys, event: Event) -> str | None:
    """The registry entry of the dialog an INVITE with Replaces (RFC 3891) names: its
    Call-ID and to-tag (our tag; the tags are matched as if the INVITE were in that dialog).
    None when the event is not such an INVITE or the header is malformed."""
    value = str(event.data.get("replaces", ""))
    if event.type != "Invite" or not value:
        return None
    call_id, *params = (part.strip() for part in value.split(";"))
    to_tag = ""
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "to-tag":
            to_tag = val.strip()
    return keys.dialog(call_id, to_tag) if call_id and to_tag else None


def new_uas(keys: Keys, event: Event) -> NewSession | None:
    """A UAS session for an initial INVITE, or None for anything else."""
    data = event.data
    if event.type != "Invite" or data.get("to_tag"):
        return None
    call_id = str(data["call_id"])
    sid = derived_sid(call_id, event.id)  # a stale copy of this INVITE finds this session
    fields = {
        "sid": sid,
        "role": "UAS",
        "call_id": call_id,
        "local_tag": secrets.token_hex(5),
        "remote_tag": str(data.get("from_tag", "")),
        "local_uri": str(data.get("to", "")),
        "remote_uri": str(data.get("from", "")),
        "remote_target": str(data.get("contact", "")),
        "route_set": str(data.get("record_route", "")),
        "remote_cseq": str(data.get("cseq", "")),
        "media_id": f"{sid}.m",
        "edge": str(data.get("edge", "")),
    }
    return NewSession(fields, keys.registry_keys(fields))


def new_uac(keys: Keys, event: Event, table: str = "default") -> NewSession | None:
    """A UAC session for a MakeCall command (the client chose sid, Call-ID and tag)."""
    data = event.data
    if event.type != "MakeCall" or not event.sid:
        return None
    target = str(data.get("target", ""))
    fields = {
        "sid": event.sid,
        "role": "UAC",
        "call_id": str(data["call_id"]),
        "local_tag": str(data["local_tag"]),
        "local_uri": str(data.get("from", "")),
        "remote_uri": str(data.get("to", target)),
        "remote_target": target,
        "local_cseq": "0",
        "media_id": f"{event.sid}.m",
        "edge": str(data.get("edge", "")),
    }
    if data.get("peer"):  # placed by another session (a transfer, a B2BUA leg)
        fields["peer"] = str(data["peer"])
    if data.get("replaces"):  # an attended transfer: our INVITE replaces that dialog
        fields["replaces"] = str(data["replaces"])
    if data.get("media_node"):  # a B2BUA leg: its media goes on its peer's node
        fields["media_node"] = str(data["media_node"])
    if data.get("latch_private") is True:  # the callee is behind NAT (media.create)
        fields["latch_private"] = "true"
    if data.get("srtp"):  # the leg's SRTP policy (else the media node's)
        fields["srtp"] = str(data["srtp"])
    if data.get("media") == "bypass":  # a bypassed B2BUA leg: its offer is data.sdp
        fields["media"] = "bypass"
    if data.get("destination"):  # a registered phone: where its requests go (its binding)
        fields["destination"] = str(data["destination"])
    return NewSession(fields, keys.registry_keys(fields), str(data.get("table", table)))


def fallback_response(event: Event, status: str, state: str) -> Respond | None:
    """The edge command answering a request no session took (481 or 500), or None."""
    data: Mapping[str, Any] = event.data
    if data.get("kind") != "request" or event.type in NO_ANSWER_NEEDED or not data.get("txn"):
        return None
    if status == "missing":
        code, reason = 481, "Call/Transaction Does Not Exist"
    else:
        code, reason = 500, f"No transition for {event.type} in {state or 'this state'}"
    return Respond(
        code=code,
        reason=reason,
        txn=data["txn"],
        call_id=data.get("call_id", ""),
        local_tag=data.get("to_tag") or secrets.token_hex(5),
    )
