"""The events each component produces, and the events published to applications.

A state table may only react to an event listed here (or one it raises itself through a
trigger, a timeout or ``raise:``), so a typo in a table is a load error, not a call that hangs.
"""

from __future__ import annotations

from typing import Final

# event type -> the component that produces it
PRODUCED: Final[dict[str, str]] = {
    # SIP edge: requests received and responses to our requests
    "Invite": "edge: initial INVITE received (data: sdp, from, to, txn)",
    "Ack": "edge: ACK for our 2xx",
    "Cancel": "edge: CANCEL matching a pending INVITE (the edge already answered it 200)",
    "Bye": "edge: BYE received in the dialog",
    "Provisional": "edge: 101-199 response to our INVITE (data: code, sdp, to_tag)",
    "Answered": "edge: 2xx response to our INVITE (data: code, sdp, to_tag, contact)",
    "Rejected": (
        "edge: 3xx-6xx response to our INVITE (data: code, reason; a 401/407 adds its "
        "www_authenticate/proxy_authenticate challenges and auth_user, the account that "
        "would answer them, empty when none)"
    ),
    "ByeDone": "edge: final response to our BYE (data: code)",
    "TransactionTimeout": "edge: timer B/F/H fired for one of our transactions (data: method)",
    "ReInvite": "edge: re-INVITE in the dialog (data: sdp, held, session_expires, txn)",
    "Update": "edge: UPDATE, RFC 3311 (data: sdp, held, session_expires, txn)",
    "Refer": "edge: REFER, RFC 3515 (data: refer_to, referred_by, txn)",
    "Notify": "edge: NOTIFY (data: event_package, subscription_state, code from sipfrag)",
    "Info": "edge: INFO, RFC 6086 (data: content_type, body, digit for DTMF bodies)",
    "Prack": "edge: PRACK, RFC 3262 (data: rack)",
    "ReferResponse": "edge: final response to our REFER (data: code)",
    "NotifyResponse": "edge: final response to our NOTIFY (data: code)",
    "InfoResponse": "edge: final response to our INFO (data: code)",
    "PrackResponse": "edge: final response to our PRACK (data: code)",
    # timers the session-timer actions start (RFC 4028)
    "RefreshDue": "timer: time to refresh the session (we are the refresher)",
    "SessionExpired": "timer: the far end did not refresh the session in time",
    "ReinviteRetry": "timer: retry our re-INVITE after a glare (491, RFC 3261 14.1)",
    # media process
    "MediaReady": "media: RTP session created or updated (data: sdp, media_node)",
    "MediaFailed": "media: could not create or update the RTP session (data: code, reason)",
    "RtpTimeout": "media: no RTP received for the inactivity period",
    "DtmfReceived": "media: a DTMF digit arrived, RFC 4733 (data: digit, media_id)",
    "PlayFinished": "media: a play ended (data: media_id, reason: done/stopped/failed, error)",
    "RecordingStopped": "media: a recording was closed (data: media_id, path, seconds, reason)",
    "ConferenceJoined": "media: the leg is mixed into a room (data: room, members, media_id)",
    "ConferenceLeft": "media: the leg left its room (data: room, members left, reason)",
    "RoomEmpty": "media: the last member left the room; its record is gone (data: room)",
    "TalkingChanged": "media: the member started or stopped talking (data: room, talking, level)",
    "ConferenceElsewhere": "media: the room is mixed on another node (data: room, media_node)",
    # a worker (or the restarted node itself), when a media node stopped heartbeating
    "MediaLost": "worker: the media node of this leg is gone (data: media_node, media_id)",
    # application (API commands)
    "MakeCall": "app: place a call (data: target, from, to)",
    "AcceptCall": "app: answer the ringing call",
    "RejectCall": "app: reject the ringing call (data: code)",
    "Hangup": "app: end the call, whatever its state",
    "Play": "app: play a tone or WAV file on the call (data: tone | file, seconds, loop)",
    "StopPlay": "app: stop playing",
    "Record": "app: record the call to a WAV file (data: path, direction in/out/both)",
    "StopRecord": "app: close the recording",
    "SendDtmf": "app: send DTMF digits (data: digits, duration_ms)",
    "Bridge": "app: relay audio with another session's leg (data: other = its media id)",
    "Unbridge": "app: stop relaying audio",
    "Hold": "app: put the far end on hold (re-INVITE with a sendonly offer)",
    "Resume": "app: take the far end off hold (re-INVITE with a sendrecv offer)",
    "Transfer": "app: blind transfer, REFER the far end to data.target",
    "Progress": "app: send 183 with our SDP while ringing (early media: play before answer)",
    "JoinConference": "app: mix the call into a room (data: room, muted, deaf, gain_db)",
    "LeaveConference": "app: take the call out of its room",
    "ConferenceMember": "app: change how the call is mixed (muted, deaf, gain_db, whisper_to)",
    "ConferencePlay": "app: play into the call's room (data: tone | file, seconds, loop, member)",
    "ConferenceRecord": "app: record the mix of the call's room (data: path)",
    "ConferenceStopRecord": "app: close the recording of the call's room",
    # other sessions (session.send / session.call)
    "TransferProgress": "session: the call placed for a REFER progressed (data: code)",
    "Replaced": "session: an INVITE with Replaces (RFC 3891) took over this dialog",
    # the two legs of a B2BUA call (state_tables/gateway.yaml) tell each other what happened
    "PeerRinging": "session: the outbound leg got a 1xx without SDP (data: code)",
    "PeerEarlyMedia": "session: the outbound leg got early media, 1xx with SDP (data: code)",
    "PeerAnswered": "session: the outbound leg was answered (2xx, ACK sent)",
    "PeerFailed": "session: the outbound leg failed before an answer (data: code, reason)",
    "PeerCancel": "session: the inbound leg gave up before an answer: cancel the outbound",
    "PeerHangup": "session: the other leg of an answered call hung up",
    # a bypassed B2BUA call (media: bypass) relays each leg's new offer to the other leg
    "PeerReoffer": "session: the other leg got an offer in a re-INVITE or UPDATE (data: sdp)",
    "PeerReanswered": "session: the other leg's far end answered the relayed offer (data: sdp)",
    "PeerReofferFailed": "session: the other leg's far end refused the relayed offer (data: code)",
    # signaling handler (the worker, on a new incoming call)
    "DeferCall": "handler: ask the application, 480 after the Deferred state's timeout",
    "RedirectCall": "handler: answer 302 (data: contacts, a list of SIP URIs)",
    "PlayAndHangup": "handler: answer, play, hang up (data: tone | file, seconds)",
    "ConferenceCall": "handler: answer the call into a conference room (data: room)",
    "ForwardCall": "handler: forward the call to data.target as a B2BUA (gateway table); "
    "data.srtp: the outbound leg's SRTP policy",
}

# Events a table may publish to the application stream.
PUBLISHABLE: Final[frozenset[str]] = frozenset(
    {
        "IncomingCall",
        "Ringing",
        "Answered",
        "Established",
        "MediaReady",
        "Ended",
        "Failed",
        "DtmfReceived",
        "PlayFinished",
        "RecordingStopped",
        "HoldChanged",
        "HoldFailed",
        "TransferRequested",
        "TransferSucceeded",
        "TransferFailed",
        "MediaMoved",
        "MemberJoined",
        "MemberLeft",
        "RoomEmpty",
        "TalkingChanged",
    }
)

#: SRTP policies (SDES) of a leg: session field ``srtp``, a route's ``srtp:``, ``--srtp``.
SRTP_POLICIES: Final[tuple[str, ...]] = ("off", "offer", "require")

#: How a forwarded call's media goes (session field ``media``, a route's ``media:``):
#: ``anchor`` (the default) through a media node, ``bypass`` end to end, SDP passed unchanged.
MEDIA_MODES: Final[tuple[str, ...]] = ("anchor", "bypass")

# Session fields every SIP command carries, so the edge needs no state of its own.
DIALOG_FIELDS: Final[tuple[str, ...]] = (
    "call_id",
    "local_tag",
    "remote_tag",
    "local_uri",
    "remote_uri",
    "remote_target",
    "route_set",
)

# Fields of the session hash a table may write with ``save``/``set`` (besides ``cond.*``).
SESSION_FIELDS: Final[frozenset[str]] = frozenset(
    {
        *DIALOG_FIELDS,
        "local_cseq",
        "remote_cseq",
        "local_sdp",
        "remote_sdp",
        "media_id",
        "media_node",
        "edge",
        "txn",
        "end_code",
        "end_reason",
        "play_tone",
        "play_file",
        "play_seconds",
        "peer",
        "hold",
        "transfer_sid",
        "transfer_target",
        "forward_target",
        "forward_srtp",
        "forward_to",
        "forward_edge",
        "forward_destination",
        "forward_next",
        "forward_ring",
        "branches",
        "fork_best",
        "destination",
        "srtp",
        "media",
        "session_expires",
        "refresher",
        "reoffer",
        "reinvite_cseq",
        "refer_cseq",
        "remote_require",
        "rseq",
        "replaces",
        "replaces_sid",
        "conference",
    }
)
