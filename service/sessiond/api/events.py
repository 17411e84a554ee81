"""Typed application events, decoded from the ``{app}:events`` stream.

Every entry carries ``id`` (deterministic per event and command index: a worker that crashed
may publish the same event twice, so consumers deduplicate on it), ``type``, ``sid`` and a
msgpack ``data`` map with ``sid``, ``state``, ``call_id``, ``local_uri``, ``remote_uri`` plus
type-specific fields (``digit``, ``path``, ``seconds``, ``end_code``, ``end_reason``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sessiond.store.entries import decode


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One application event of one session (base class of the typed events)."""

    TYPE: ClassVar[str] = ""

    id: str  #: the event id: equal ids are the same event (deduplicate on it)
    type: str  #: the event type, e.g. ``"IncomingCall"``
    sid: str  #: the session id
    data: Mapping[str, Any] = field(default_factory=dict)  #: every field, as published
    entry_id: str = ""  #: the stream entry id (what is acknowledged)

    @property
    def state(self) -> str:
        """The session's state right after the transition that published this event."""
        return str(self.data.get("state", ""))

    @property
    def call_id(self) -> str:
        """The SIP Call-ID."""
        return str(self.data.get("call_id", ""))

    @property
    def local_uri(self) -> str:
        """Our URI (From for calls we place, To for calls we receive)."""
        return str(self.data.get("local_uri", ""))

    @property
    def remote_uri(self) -> str:
        """The other party's URI."""
        return str(self.data.get("remote_uri", ""))


class IncomingCall(CallEvent):
    """A call arrived and rings until the application accepts or rejects it."""

    TYPE = "IncomingCall"


class Ringing(CallEvent):
    """The far end rings (1xx to our INVITE)."""

    TYPE = "Ringing"


class Answered(CallEvent):
    """The call was answered (200 sent or received)."""

    TYPE = "Answered"


class Established(CallEvent):
    """The dialog is confirmed (ACK sent or received): media flows."""

    TYPE = "Established"


class MediaReady(CallEvent):
    """The media node prepared the call's RTP session."""

    TYPE = "MediaReady"


class _Ending(CallEvent):
    @property
    def code(self) -> int:
        """The SIP-style code of the end (200 for a normal hangup, 486, 408...)."""
        return _int(self.data.get("end_code", self.data.get("code")))

    @property
    def reason(self) -> str:
        """Why the call ended, e.g. ``"remote hangup"`` or ``"Busy Here"``."""
        return str(self.data.get("end_reason", self.data.get("reason", "")))


class Ended(_Ending):
    """The call is over (hung up, cancelled, rejected by us, timed out)."""

    TYPE = "Ended"


class Failed(_Ending):
    """The call could not be set up (rejected by the far end, no response, media failure)."""

    TYPE = "Failed"


class DtmfReceived(CallEvent):
    """A DTMF digit arrived (RFC 4733)."""

    TYPE = "DtmfReceived"

    @property
    def digit(self) -> str:
        """The digit: ``0-9``, ``*``, ``#`` or ``A-D``."""
        return str(self.data.get("digit", ""))


class PlayFinished(CallEvent):
    """A play ended (``reason``: done, stopped or failed)."""

    TYPE = "PlayFinished"

    @property
    def reason(self) -> str:
        """``done``, ``stopped`` or ``failed``."""
        return str(self.data.get("reason", ""))


class RecordingStopped(CallEvent):
    """A recording was closed; ``path`` holds the WAV file, ``seconds`` its length."""

    TYPE = "RecordingStopped"

    @property
    def path(self) -> str:
        """The WAV file (on the media node's file system)."""
        return str(self.data.get("path", ""))

    @property
    def seconds(self) -> float:
        """The recorded duration."""
        value = self.data.get("seconds", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0


class HoldChanged(CallEvent):
    """The call went on or off hold, by us (``hold`` in local/both) or by the far end
    (``hold`` in remote/both); ``hold`` is empty when nobody holds."""

    TYPE = "HoldChanged"

    @property
    def hold(self) -> str:
        """``""``, ``local`` (we hold the far end), ``remote`` (it holds us) or ``both``."""
        return str(self.data.get("hold", ""))

    @property
    def held_by_us(self) -> bool:
        return self.hold in ("local", "both")

    @property
    def held_by_remote(self) -> bool:
        return self.hold in ("remote", "both")


class MediaMoved(CallEvent):
    """The media node of the call was lost and the call now runs on another one (a
    re-INVITE moved it). Plays, recordings and bridges of the old leg ended with it."""

    TYPE = "MediaMoved"


class HoldFailed(CallEvent):
    """The far end refused our hold or resume (``code``); the call stays as it was."""

    TYPE = "HoldFailed"

    @property
    def code(self) -> int:
        return _int(self.data.get("code"))


class TransferRequested(CallEvent):
    """The far end asked us to call ``target`` (REFER); the new call's session is
    ``new_sid`` and this call ends once the far end hangs up."""

    TYPE = "TransferRequested"

    @property
    def target(self) -> str:
        return str(self.data.get("transfer_target") or self.data.get("refer_to", ""))

    @property
    def new_sid(self) -> str:
        """The session of the call placed to the transfer target."""
        return str(self.data.get("transfer_sid", ""))


class TransferSucceeded(CallEvent):
    """The transfer completed: the target answered the new call."""

    TYPE = "TransferSucceeded"


class TransferFailed(CallEvent):
    """The transfer failed (``code``); the original call goes on."""

    TYPE = "TransferFailed"

    @property
    def code(self) -> int:
        return _int(self.data.get("code"))


class _RoomEvent(CallEvent):
    @property
    def room(self) -> str:
        """The conference room."""
        return str(self.data.get("room", ""))

    @property
    def members(self) -> int:
        """How many members the room has now (MemberJoined, MemberLeft)."""
        return _int(self.data.get("members"))


class MemberJoined(_RoomEvent):
    """The call is mixed into a conference room (again, after a move to another node)."""

    TYPE = "MemberJoined"


class MemberLeft(_RoomEvent):
    """The call left its conference room (``reason``: left, moved to another room, hung up)."""

    TYPE = "MemberLeft"

    @property
    def reason(self) -> str:
        return str(self.data.get("reason", ""))


class RoomEmpty(_RoomEvent):
    """The call was the last member of its room: the room is gone."""

    TYPE = "RoomEmpty"


class TalkingChanged(_RoomEvent):
    """The member started or stopped talking (a voice-activity level, ``level`` in dBov)."""

    TYPE = "TalkingChanged"

    @property
    def talking(self) -> bool:
        return bool(self.data.get("talking"))

    @property
    def level(self) -> float:
        value = self.data.get("level", -127.0)
        return float(value) if isinstance(value, int | float) else -127.0


EVENT_TYPES: dict[str, type[CallEvent]] = {
    cls.TYPE: cls
    for cls in (
        IncomingCall,
        Ringing,
        Answered,
        Established,
        MediaReady,
        Ended,
        Failed,
        DtmfReceived,
        PlayFinished,
        RecordingStopped,
        HoldChanged,
        HoldFailed,
        MediaMoved,
        TransferRequested,
        TransferSucceeded,
        TransferFailed,
        MemberJoined,
        MemberLeft,
        RoomEmpty,
        TalkingChanged,
    )
}


def parse_entry(entry_id: Any, fields: Mapping[Any, Any]) -> CallEvent:
    """Decode one app events stream entry; unknown types become a plain :class:`CallEvent`."""
    entry = decode(fields, lenient=True)
    sid = entry.sid or str(entry.data.get("sid", ""))
    cls = EVENT_TYPES.get(entry.type, CallEvent)
    return cls(entry.id, entry.type, sid, entry.data, _text(entry_id))
