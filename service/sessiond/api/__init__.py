"""The call-control API: :class:`SimplePeer` (a SIP endpoint in this process) and
:class:`Client` (commands and events of a sessiond cluster, through Redis)."""

from sessiond.api.call import Call, Invitation
from sessiond.api.client import Client
from sessiond.api.errors import (
    CallEnded,
    CallError,
    CallFailed,
    CallRejected,
    CallTimeout,
    SessiondError,
    SessionNotFound,
)
from sessiond.api.events import (
    Answered,
    CallEvent,
    DtmfReceived,
    Ended,
    Established,
    Failed,
    IncomingCall,
    MediaReady,
    MemberJoined,
    MemberLeft,
    PlayFinished,
    RecordingStopped,
    Ringing,
    RoomEmpty,
    TalkingChanged,
)
from sessiond.api.peer import SimplePeer
from sessiond.api.rooms import Rooms
from sessiond.api.stream import EventStream

__all__ = [
    "Answered",
    "Call",
    "CallEnded",
    "CallError",
    "CallEvent",
    "CallFailed",
    "CallRejected",
    "CallTimeout",
    "Client",
    "DtmfReceived",
    "Ended",
    "Established",
    "EventStream",
    "Failed",
    "IncomingCall",
    "Invitation",
    "MediaReady",
    "MemberJoined",
    "MemberLeft",
    "PlayFinished",
    "RecordingStopped",
    "Ringing",
    "RoomEmpty",
    "Rooms",
    "SessionNotFound",
    "SessiondError",
    "SimplePeer",
    "TalkingChanged",
]
