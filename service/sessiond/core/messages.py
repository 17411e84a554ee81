"""Every message between sessiond's processes, as a typed record defined once.

A stream entry (:mod:`sessiond.store.entries`) carries a message's ``type`` and its ``data``
map; the record here names that map's fields and their types. Producers build the record and
hand its :meth:`Message.data` to the entry codec; consumers may read a ``data`` map back into
its record with :func:`read` (tables keep reading ``Event.data`` fields by name). Records are
``msgspec`` Structs: in the micro-benchmark of this change they encoded 10x and decoded 4-10x
faster than dataclasses + msgpack. Fields left at their default (``None``) are not on the wire,
so the wire holds exactly the fields it held when these were plain dicts.

Application commands are described by :mod:`sessiond.core.appschema` (which checks them
before a table sees them), not repeated here. ``python -m sessiond.core.messages_doc``
writes the schema page ``docs/messages.md`` from these types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import msgspec

# Where a message travels: the stream it is an entry of.
EVENTS = "events"  # {p<n>}:events, the sessions' partitions (read by workers)
EDGE = "edge commands"  # edge:<name>:commands (read by one edge)
MEDIA = "media commands"  # media:<node>:commands and the media pool
APP = "app events"  # app:events (read by applications, sessiond.api)


class Message(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A stream entry's ``data``: ``TYPES`` are the entry types that carry it."""

    STREAM: ClassVar[str] = ""
    TYPES: ClassVar[tuple[str, ...]] = ()

    def data(self, last: Iterable[str] = ()) -> dict[str, Any]:
        """The ``data`` map: every field not at its default, under its wire name, in the
        order of the fields; then those named in ``last``, in that order (an edge event's
        header fields in the order the SIP message had them, as on the wire before)."""
        out = dict(msgspec.to_builtins(self))
        for name in last:
            if name in out:
                out[name] = out.pop(name)
        return out


# -- edge events: SIP requests and responses, as the edge publishes them ----------------------


class RequestEvent(Message, frozen=True, rename={"from_": "from"}):
    """A request that starts or continues a session. Header fields are there when the
    request has the header (repeated values joined with ``, ``)."""

    STREAM = EVENTS
    TYPES = (
        "Invite",
        "ReInvite",
        "Ack",
        "Bye",
        "Cancel",
        "Update",
        "Refer",
        "Notify",
        "Info",
        "Prack",
    )

    kind: str  # "request"
    method: str
    call_id: str
    from_tag: str
    to_tag: str
    from_: str  # the From header without its tag
    to: str  # the To header without its tag
    contact: str  # the first Contact URI (a private host behind NAT: the source, edge/nat.py)
    cseq: int
    record_route: str  # Record-Route values, comma-separated
    sdp: str  # the body when it is application/sdp
    txn: str  # transport, source and the request's Via/From/To/Call-ID/CSeq lines
    edge: str  # the edge that received it
    source: str  # host:port
    refer_to: str | None = None
    referred_by: str | None = None
    replaces: str | None = None  # the Replaces header, or the one Refer-To embeds
    session_expires: str | None = None
    min_se: str | None = None
    supported: str | None = None
    require: str | None = None
    event_package: str | None = None  # the Event header
    subscription_state: str | None = None
    rseq: str | None = None
    rack: str | None = None
    target: str | None = None  # Refer-To's URI without its headers
    held: bool | None = None  # whether the SDP puts us on hold (when there is SDP)
    content_type: str | None = None  # a body that is not SDP: its type
    body: str | None = None  # ... and its text
    digit: str | None = None  # INFO: the DTMF digit of its body
    code: int | None = None  # NOTIFY: the status of its message/sipfrag body
    aor: str | None = None  # initial INVITE to a user of a --registrar domain: user@domain


class ResponseEvent(Message, frozen=True):
    """A response to one of our requests (no 100): INVITE's as Provisional, Answered or
    Rejected; final ones to BYE as ByeDone, to REFER, NOTIFY, INFO, PRACK as ReferResponse,
    NotifyResponse, InfoResponse, PrackResponse."""

    STREAM = EVENTS
    TYPES = (
        "Provisional",
        "Answered",
        "Rejected",
        "ByeDone",
        "ReferResponse",
        "NotifyResponse",
        "InfoResponse",
        "PrackResponse",
    )

    kind: str  # "response"
    method: str
    code: int
    reason: str
    call_id: str
    from_tag: str
    to_tag: str
    contact: str  # the first Contact URI (a private host behind NAT: the source, edge/nat.py)
    route_set: str  # Record-Route reversed, comma-separated (RFC 3261 12.1.2)
    sdp: str
    cseq: int
    edge: str
    session_expires: str | None = None
    min_se: str | None = None
    require: str | None = None
    supported: str | None = None
    rseq: str | None = None
    retry_after: str | None = None
    body: str | None = None  # a message/sipfrag body
    www_authenticate: list[str] | None = None  # 401: the challenges
    proxy_authenticate: list[str] | None = None  # 407: the challenges


class TransactionTimeout(Message, frozen=True, kw_only=True, omit_defaults=False):
    """Our request had no final response in time (the edge's 408). Every field is on the
    wire, those with a default too."""

    STREAM = EVENTS
    TYPES = ("TransactionTimeout",)

    kind: str = "response"
    method: str
    code: int = 408
    reason: str = "Request Timeout"
    call_id: str
    from_tag: str  # our tag
    to_tag: str = ""
    edge: str


class TimerFired(Message, frozen=True):
    """A table timer came due (``pop_timers.lua`` writes it with a plain ``epoch`` field and
    the type the table named, e.g. ``NoAnswer``; :mod:`sessiond.store.entries` reads the
    field into the data)."""

    STREAM = EVENTS
    TYPES = ("<timer event>",)

    epoch: str  # the timer's epoch: a re-armed timer's older copies are stale


# -- edge commands: what the tables tell an edge to send -------------------------------------


class Respond(Message, frozen=True):
    """Answer the server transaction of ``txn``. The tables' answers carry the dialog
    fields too (a worker's fallback answer to an unknown session does not)."""

    STREAM = EDGE
    TYPES = ("respond",)

    code: int
    txn: str
    call_id: str | None = None
    local_tag: str | None = None  # our To tag
    remote_tag: str | None = None
    local_uri: str | None = None
    remote_uri: str | None = None
    remote_target: str | None = None
    route_set: str | None = None
    reason: str | None = None
    sdp: str | None = None
    reliable: bool | None = None  # a 100rel provisional, resent until its PRACK
    headers: list[list[str]] | None = None  # [name, value] pairs
    contacts: list[str] | None = None  # 3xx: the Contact URIs


# The requests below carry the dialog (call_id ... route_set) so that an edge that restarted
# can still send them. Their fields are in the order of the wire map (hence no shared base:
# a subclass's fields would come after its base's).


class SendInvite(Message, frozen=True):
    """Send the initial INVITE (again, with credentials, after a 401/407)."""

    STREAM = EDGE
    TYPES = ("invite",)

    cseq: int
    sdp: str  # our offer
    call_id: str
    local_tag: str
    remote_tag: str  # empty: the INVITE is out of dialog
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: str
    challenge_code: int | None = None  # 401 or 407
    challenges: list[str] | None = None  # the WWW-/Proxy-Authenticate values
    headers: list[list[str]] | None = None  # [name, value] pairs
    destination: str | None = None  # "TRANSPORT host:port": sent there, not to the URI


class SendRequest(Message, frozen=True, kw_only=True):
    """Send an in-dialog request (re-INVITE, UPDATE, REFER, NOTIFY, INFO, PRACK...); ``ack``,
    ``cancel`` and ``bye`` carry only ``cseq`` and the dialog fields."""

    STREAM = EDGE
    TYPES = ("request", "ack", "cancel", "bye")

    method: str | None = None  # "request" only
    cseq: int
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: str
    sdp: str | None = None
    headers: list[list[str]] | None = None  # [name, value] pairs
    body: str | None = None
    content_type: str | None = None  # of ``body``
    destination: str | None = None  # "TRANSPORT host:port": sent there, not to the URI


# -- media commands and events --------------------------------------------------------------


class MediaLeg(Message, frozen=True):
    """A command for one leg: ``destroy``, ``answered`` (our answer is out: the leg may
    send), ``stop_play``, ``stop_record``, ``unbridge``."""

    STREAM = MEDIA
    TYPES: ClassVar[tuple[str, ...]] = (
        "destroy",
        "answered",
        "stop_play",
        "stop_record",
        "unbridge",
        "conf_leave",
        "conf_stop_record",
    )

    media_id: str


class CreateLeg(MediaLeg, frozen=True):
    """Allocate a leg and make our SDP: an offer, or the answer to ``remote_sdp``."""

    TYPES = ("create",)

    mode: str  # "offer" | "answer"
    remote_sdp: str | None = None
    quiet: bool | None = None  # answer: silent until the answer is sent
    direction: str | None = None  # sendrecv (default), sendonly, recvonly, inactive
    origin: str | None = None  # the o= line to keep (a leg moved to another node)
    latch_private: bool | None = None  # a private SDP address: send only where RTP comes from
    srtp: str | None = None  # SRTP policy off, offer, require (None: the node's --srtp)


class UpdateLeg(MediaLeg, frozen=True):
    """The peer's new SDP (an offer, or with ``answer`` the answer to our re-offer)."""

    TYPES = ("update",)

    remote_sdp: str
    direction: str | None = None
    answer: bool | None = None


class Reoffer(MediaLeg, frozen=True):
    """Make a new offer (hold: sendonly; resume: sendrecv)."""

    TYPES = ("reoffer",)

    direction: str


class Play(MediaLeg, frozen=True):
    """Play a tone or a WAV file (exactly one of them)."""

    TYPES = ("play",)

    tone: float | None = None  # Hz
    file: str | None = None
    seconds: float | None = None
    loop: bool | None = None


class Record(MediaLeg, frozen=True):
    """Record the leg to a WAV file. Like ``play``'s and ``send_dtmf``'s, its fields come
    from the table or, as they are, from the event (an application's, checked by its
    schema), so the node checks them."""

    TYPES = ("record",)

    path: str | None = None  # the node fails the command without it
    direction: str | None = None  # in, out, both (default)


class SendDtmf(MediaLeg, frozen=True):
    """Send digits as RFC 4733 events in the RTP stream."""

    TYPES = ("send_dtmf",)

    digits: str | None = None  # the node fails the command without them
    duration_ms: int | None = None  # per digit, 100 by default


class Bridge(MediaLeg, frozen=True):
    """Exchange this leg's audio with leg ``other`` (on the same node)."""

    TYPES = ("bridge",)

    other: str


class ConferenceJoin(MediaLeg, frozen=True):
    """Mix the leg into conference room ``room`` on this node (leaving any other room it
    is in); the member's stored flags (:mod:`sessiond.store.rooms`) win over these, so a
    member moved to another node keeps them. ``conf_leave`` (a plain :class:`MediaLeg`)
    takes it out."""

    TYPES = ("conf_join",)

    room: str
    muted: bool | None = None
    deaf: bool | None = None
    gain_db: float | None = None


class ConferenceMember(MediaLeg, frozen=True):
    """Change the flags of the leg's membership: what is given changes, the rest stays.
    ``whisper_to`` is a member's session id ("" to speak to the whole room again)."""

    TYPES = ("conf_set",)

    muted: bool | None = None
    deaf: bool | None = None
    gain_db: float | None = None
    whisper_to: str | None = None


class ConferencePlay(MediaLeg, frozen=True):
    """Play a tone or a WAV file into the leg's room, or (``member``) to this member only;
    PlayFinished to the session when it ends."""

    TYPES = ("conf_play",)

    tone: float | None = None  # Hz
    file: str | None = None
    seconds: float | None = None
    loop: bool | None = None
    member: bool | None = None


class ConferenceRecord(MediaLeg, frozen=True):
    """Record the mix of the leg's room to a WAV file (``conf_stop_record``, a plain
    :class:`MediaLeg`, closes it); RecordingStopped to the session that asked."""

    TYPES = ("conf_record",)

    path: str | None = None


class MediaReady(Message, frozen=True):
    STREAM = EVENTS
    TYPES = ("MediaReady",)

    sdp: str  # our offer or answer
    media_node: str
    media_id: str


class MediaFailed(Message, frozen=True):
    """A create or update failed: 488 (SDP, offer/answer), 503 (no port), 500."""

    STREAM = EVENTS
    TYPES = ("MediaFailed",)

    code: int
    reason: str
    media_id: str


class MediaLost(Message, frozen=True):
    """A node stopped heartbeating: one per leg it held (published by another process)."""

    STREAM = EVENTS
    TYPES = ("MediaLost",)

    media_node: str
    media_id: str
    reason: str


class LegEvent(Message, frozen=True):
    """What a leg saw: ``DtmfReceived`` (``digit``), ``RtpTimeout``, ``PlayFinished``
    (``reason``: done, stopped, failed with ``error``), ``RecordingStopped`` (``path``,
    ``seconds``, ``reason``; failed with ``error``)."""

    STREAM = EVENTS
    TYPES = ("DtmfReceived", "RtpTimeout", "PlayFinished", "RecordingStopped")

    media_id: str
    digit: str | None = None
    path: str | None = None
    seconds: float | None = None
    reason: str | None = None
    error: str | None = None  # why a play or record failed


class RoomEvent(Message, frozen=True):
    """What a conference room on a media node tells a member's session: ``ConferenceJoined``
    (``members``: how many now), ``ConferenceLeft`` (``reason``: left, moved to another
    room, hung up), ``RoomEmpty`` (the last member left: the room record is gone),
    ``TalkingChanged`` (``talking``, ``level`` in dBov), ``ConferenceElsewhere`` (the room
    lives on ``media_node``: the leg must move there)."""

    STREAM = EVENTS
    TYPES = (
        "ConferenceJoined",
        "ConferenceLeft",
        "RoomEmpty",
        "TalkingChanged",
        "ConferenceElsewhere",
    )

    media_id: str
    room: str
    members: int | None = None
    reason: str | None = None
    talking: bool | None = None
    level: float | None = None
    media_node: str | None = None


# -- application events ----------------------------------------------------------------------


class AppEvent(Message, frozen=True):
    """An event for applications (typed for them in :mod:`sessiond.api.events`); the type
    names the moment of the call: IncomingCall, Ringing, Answered, Established, MediaReady,
    Ended, Failed, DtmfReceived, PlayFinished, RecordingStopped, HoldChanged, HoldFailed,
    MediaMoved, TransferRequested, TransferSucceeded, TransferFailed, MemberJoined,
    MemberLeft, RoomEmpty, TalkingChanged."""

    STREAM = APP
    TYPES = ("IncomingCall", "Ringing", "Answered", "Established", "Ended", "Failed", "...")

    sid: str
    state: str
    call_id: str
    local_uri: str
    remote_uri: str
    # the fields the event that made the step carried (sessiond.table.engine.APP_EVENT_FIELDS)
    code: int | None = None
    reason: str | None = None
    digit: str | None = None
    path: str | None = None
    seconds: float | None = None
    error: str | None = None
    media_id: str | None = None
    method: str | None = None
    refer_to: str | None = None
    room: str | None = None  # conference events
    members: int | None = None
    talking: bool | None = None
    level: float | None = None
    # then the session's fields, when set (APP_SESSION_FIELDS; session fields are text)
    end_code: str | None = None
    end_reason: str | None = None
    hold: str | None = None
    transfer_sid: str | None = None
    transfer_target: str | None = None
    peer: str | None = None  # a B2BUA's other leg
    conference: str | None = None  # the room the call is in


RECORDS: tuple[type[Message], ...] = (
    RequestEvent,
    ResponseEvent,
    TransactionTimeout,
    TimerFired,
    Respond,
    SendInvite,
    SendRequest,
    MediaLeg,
    CreateLeg,
    UpdateLeg,
    Reoffer,
    Play,
    Record,
    SendDtmf,
    Bridge,
    ConferenceJoin,
    ConferenceMember,
    ConferencePlay,
    ConferenceRecord,
    MediaReady,
    MediaFailed,
    MediaLost,
    LegEvent,
    RoomEvent,
    AppEvent,
)
_BY_TYPE = {(cls.STREAM, t): cls for cls in RECORDS for t in cls.TYPES}


def read(stream: str, entry_type: str, data: Any) -> Message:
    """The record of a ``data`` map of an entry of ``entry_type`` on ``stream``;
    ``msgspec.ValidationError`` when a field is missing or of the wrong type."""
    record = _BY_TYPE.get((stream, entry_type))
    if record is None:
        raise KeyError(f"no message type {entry_type!r} on {stream}")
    return msgspec.convert(data, record, strict=False)
