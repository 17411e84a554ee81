"""Dialogs (RFC 3261 12, 13.2.2.4, 13.3.1.4) as plain data that fits a Redis hash.

Theory of operation
-------------------
A :class:`Dialog` is created by a UAC from a 1xx-with-tag or 2xx response to its INVITE
(12.1.2) or by a UAS from the INVITE it answers (12.1.1). It holds the dialog state of
12.1: Call-ID, local and remote tags, local and remote URIs, remote target, route set,
local and remote CSeq, and the secure flag. :meth:`Dialog.to_fields` /
:meth:`Dialog.from_fields` map it to a flat ``str -> str`` dict (the session hash) and
back, so any worker can build the next in-dialog request. Field names are those of the
session hash (``call_id``, ``local_tag``, ``route_set``...); the ones that would collide
with session fields carry a ``dialog_`` prefix (``dialog_state``, ``dialog_role``).

In-dialog requests (12.2.1.1) take their Request-URI and Route from the remote target and
route set (loose or strict routing); :meth:`Dialog.create_ack` builds the ACK for a 2xx
with the INVITE's CSeq number (13.2.2.4). :class:`AnswerRetransmitter` re-sends a UAS 2xx
until the ACK arrives (T1 doubling up to T2, give up at 64*T1; 13.3.1.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from sessiond.sip.actions import Action, Peer, Send, TimedOut
from sessiond.sip.address import NameAddr
from sessiond.sip.errors import DialogError, SipParseError
from sessiond.sip.grammar import split_commas
from sessiond.sip.message import SipMessage, SipRequest, SipResponse
from sessiond.sip.timers import TimerConfig
from sessiond.sip.uri import SipUri

DialogId = tuple[str, str, str]
FIELDS = (
    "call_id",
    "local_tag",
    "remote_tag",
    "local_uri",
    "remote_uri",
    "remote_target",
    "route_set",
    "local_cseq",
    "remote_cseq",
    "local_contact",
    "dialog_role",
    "dialog_state",
    "dialog_secure",
)
# Methods whose requests carry a Contact and refresh the remote target (12.2, RFC 3311/6665).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


def _without_tag(addr: NameAddr) -> str:
    return str(replace(addr, params=tuple(p for p in addr.params if p[0].lower() != "tag")))


def _contact_uri(msg: SipMessage) -> str:
    try:
        contacts = msg.contacts()
    except SipParseError as exc:
        raise DialogError(f"bad Contact: {exc.problem}") from exc
    if len(contacts) != 1:
        raise DialogError("a dialog-creating message needs exactly one Contact")
    return contacts[0].uri


def request_dialog_id(request: SipRequest) -> DialogId:
    """Dialog id of a request as seen by the UAS: (Call-ID, To tag, From tag)."""
    return (request.call_id or "", request.to_tag or "", request.from_tag or "")


def response_dialog_id(response: SipResponse) -> DialogId:
    """Dialog id of a response as seen by the UAC: (Call-ID, From tag, To tag)."""
    return (response.call_id or "", response.from_tag or "", response.to_tag or "")


@dataclass(slots=True)
class Dialog:
    """Dialog state (12.1). ``remote_cseq`` is ``None`` until the peer sends a request."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    local_cseq: int
    remote_cseq: int | None
    local_contact: str
    role: str  # "uac" | "uas"
    dialog_state: str = "confirmed"  # "early" | "confirmed"
    secure: bool = False

    @property
    def id(self) -> DialogId:
        """(Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation (12.1) -------------------------------------------------------------
    @classmethod
    def for_uac(cls, request: SipRequest, response: SipResponse, local_contact: str) -> Dialog:
        """UAC side, from a 101-199 response with a To tag or a 2xx (12.1.2)."""
        if not 101 <= response.status < 300 or not response.to_tag:
            raise DialogError("only a 1xx with To tag or a 2xx creates a dialog")
        if request.from_addr is None or response.to_addr is None or request.cseq is None:
            raise DialogError("request lacks From or CSeq")
        routes = [str(a) for a in response.addresses("Record-Route")]
        return cls(
            call_id=request.call_id or "",
            local_tag=request.from_tag or "",
            remote_tag=response.to_tag,
            local_uri=_without_tag(request.from_addr),
            remote_uri=_without_tag(response.to_addr),
            remote_target=_contact_uri(response),
            route_set=tuple(reversed(routes)),
            local_cseq=request.cseq.seq,
            remote_cseq=None,
            local_contact=local_contact,
            role="uac",
            dialog_state="confirmed" if response.status >= 200 else "early",
            secure=request.uri.lower().startswith("sips:"),
        )

    @classmethod
    def for_uas(
        cls, request: SipRequest, local_tag: str, local_contact: str, *, early: bool = False
    ) -> Dialog:
        """UAS side, when answering ``request`` with a To tag (12.1.1)."""
        if request.from_addr is None or request.to_addr is None or request.cseq is None:
            raise DialogError("request lacks From, To or CSeq")
        return cls(
            call_id=request.call_id or "",
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=_without_tag(request.to_addr),
            remote_uri=_without_tag(request.from_addr),
            remote_target=_contact_uri(request),
            route_set=tuple(str(a) for a in request.addresses("Record-Route")),
            local_cseq=0,
            remote_cseq=request.cseq.seq,
            local_contact=local_contact,
            role="uas",
            dialog_state="early" if early else "confirmed",
            secure=request.uri.lower().startswith("sips:"),
        )

    # -- updates (12.2) --------------------------------------------------------------
    def confirm(self, response: SipResponse) -> None:
        """UAC: a 2xx confirms an early dialog; a 2xx to a target refresh updates the target."""
        if 200 <= response.status < 300:
            self.dialog_state = "confirmed"
            if response.method in TARGET_REFRESH and response.header("contact"):
                self.remote_target = _contact_uri(response)

    def receive_request(self, request: SipRequest) -> None:
        """Check and record the remote CSeq of an in-dialog request (12.2.2).

        Raises :class:`DialogError` with ``status`` 500 for an out-of-order request.
        """
        if request.cseq is None:
            raise DialogError("request without CSeq")
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and seq <= self.remote_cseq:
                raise DialogError(f"CSeq {seq} not above {self.remote_cseq}", status=500)
            self.remote_cseq = seq
        if request.method in TARGET_REFRESH and request.header("contact"):
            self.remote_target = _contact_uri(request)

    # -- requests within the dialog (12.2.1.1) ----------------------------------------
    def create_request(
        self,
        method: str,
        via: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """Build the next request (BYE, re-INVITE, INFO...); bumps the local CSeq."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"use create_ack / build_cancel for {method}")
        self.local_cseq += 1
        return self._request(method, self.local_cseq, via, headers, body, content_type)

    def create_ack(self, invite_cseq: int, via: str, *, body: bytes = b"") -> SipRequest:
        """ACK for a 2xx to the INVITE with CSeq ``invite_cseq`` (13.2.2.4)."""
        ctype = "application/sdp" if body else None
        return self._request("ACK", invite_cseq, via, (), body, ctype)

    def _request(
        self,
        method: str,
        seq: int,
        via: str,
        extra: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> SipRequest:
        uri, routes = self._target_and_routes()
        hdrs = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        hdrs += [("Route", r) for r in routes]
        if method in TARGET_REFRESH:
            hdrs.append(("Contact", self.local_contact))
        hdrs += list(extra)
        if content_type is not None:
            hdrs.append(("Content-Type", content_type))
        return SipRequest.create(method, uri, hdrs, body)

    def _target_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route values: loose routing unless the first route is strict."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0], "Route")
        uri = first.parsed_uri()
        if isinstance(uri, SipUri) and not uri.lr:
            # Strict router (12.2.1.1): it becomes the Request-URI; target goes last.
            return first.uri, [*self.route_set[1:], f"<{self.remote_target}>"]
        return self.remote_target, list(self.route_set)

    # -- storage ---------------------------------------------------------------------
    def to_fields(self) -> dict[str, str]:
        """Flat, human-readable ``str -> str`` mapping (the Redis hash fields)."""
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_uri": self.local_uri,
            "remote_uri": self.remote_uri,
            "remote_target": self.remote_target,
            "route_set": ", ".join(self.route_set),
            "local_cseq": str(self.local_cseq),
            "remote_cseq": "" if self.remote_cseq is None else str(self.remote_cseq),
            "local_contact": self.local_contact,
            "dialog_role": self.role,
            "dialog_state": self.dialog_state,
            "dialog_secure": "1" if self.secure else "0",
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Dialog:
        """Rebuild a dialog from :meth:`to_fields` output (extra keys are ignored)."""
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise DialogError("missing dialog fields: " + ", ".join(missing))
        try:
            local_cseq = int(fields["local_cseq"])
            remote = fields["remote_cseq"]
            remote_cseq = int(remote) if remote else None
        except ValueError as exc:
            raise DialogError(f"bad CSeq field: {exc}") from exc
        routes = fields["route_set"]
        return cls(
            call_id=fields["call_id"],
            local_tag=fields["local_tag"],
            remote_tag=fields["remote_tag"],
            local_uri=fields["local_uri"],
            remote_uri=fields["remote_uri"],
            remote_target=fields["remote_target"],
            route_set=tuple(split_commas(routes)) if routes else (),
            local_cseq=local_cseq,
            remote_cseq=remote_cseq,
            local_contact=fields["local_contact"],
            role=fields["dialog_role"],
            dialog_state=fields["dialog_state"],
            secure=fields["dialog_secure"] == "1",
        )


class AnswerRetransmitter:
    """UAS 2xx retransmission until ACK (13.3.1.4): T1, 2*T1, ... capped at T2; 64*T1 ends.

    When it gives up it reports :class:`TimedOut` (timer ``"2xx"``): the UAS should then
    confirm and immediately terminate the dialog with a BYE.
    """

    def __init__(
        self, key: str, response: SipResponse, peer: Peer, now: float, timers: TimerConfig
    ) -> None:
        self.key = key
        self.response = response
        self.peer = peer
        self.timers = timers
        self._interval = timers.t1
        self._next: float | None = now + timers.t1
        self._give_up = now + timers.timeout

    @property
    def done(self) -> bool:
        """True once the ACK arrived or the retransmitter gave up."""
        return self._next is None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next."""
        return None if self._next is None else min(self._next, self._give_up)

    def ack_received(self) -> None:
        """Stop: the ACK for this 2xx arrived."""
        self._next = None

    def handle_timer(self, now: float) -> list[Action]:
        """Retransmit when due; give up at 64*T1."""
        if self._next is None or now < min(self._next, self._give_up):
            return []
        if now >= self._give_up:
            self._next = None
            return [TimedOut(self.key, "2xx")]
        self._interval = min(self._interval * 2, self.timers.t2)
        self._next = now + self._interval
        return [Send(self.response, self.peer, self.key)]
