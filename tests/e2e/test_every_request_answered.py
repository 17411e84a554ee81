"""Every request gets the answer RFC 3261 asks for, from a live ``sessiond run`` (edge, worker
and media in one process) over real UDP and TCP sockets: REGISTER 405 with an accurate Allow
(no registrar here), unknown methods 501, OPTIONS' Allow exactly the methods handled, 406
when Accept excludes the SDP our answer carries (before any ringing), and RFC 2543-style
requests (a branch without the magic cookie, or none) taken through a normal call, their
retransmissions, ACKs and CANCELs matched the old way (17.2.3)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessiond.edge.mapping import ALLOWED, HANDLED_METHODS

from .harness import Cluster, wait_for

pytestmark = [pytest.mark.redis]

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@dataclass
class Service:
    cluster: Cluster
    port: int


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    cluster = Cluster(redis_url, tmp_path_factory.mktemp("answers"))
    try:
        yield Service(cluster, cluster.start_run("--answer", "auto", tcp=True))
    finally:
        cluster.stop_all()
        cluster.cleanup()


class Phone:
    """A far end on one UDP socket or one TCP connection, sending raw requests."""

    def __init__(self, port: int, transport: str = "UDP") -> None:
        self.transport = transport
        if transport == "UDP":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.connect(("127.0.0.1", port))
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.port = port
        self.local: int = self.sock.getsockname()[1]
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        *,
        call_id: str,
        via_params: str = "",
        to_tag: str = "",
        from_tag: str = "a1",
        cseq: int = 1,
        uri: str | None = None,
        extra: str = "",
        body: str = "",
        max_forwards: bool = True,
        sent_by: str = "",
    ) -> bytes:
        """A request; ``via_params`` is what follows the top Via's sent-by (the branch)."""
        to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        sender = "<sip:alice@127.0.0.1>" + (f";tag={from_tag}" if from_tag else "")
        lines = [
            f"{method} {uri or f'sip:bob@127.0.0.1:{self.port}'} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {sent_by or f'127.0.0.1:{self.local}'}{via_params}",
            f"From: {sender}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            *(["Max-Forwards: 70"] if max_forwards else []),
            f"Contact: <sip:alice@127.0.0.1:{self.local}>",
        ]
        if extra:
            lines.append(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def replies(self, quiet: float = 1.0, until: int | None = None, limit: float = 15) -> list[str]:
        """Responses received until ``quiet`` seconds pass without one, or (with ``until``)
        until a response with that status arrives (at most ``limit`` seconds in all)."""
        out: list[str] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            msg = self._next(quiet if until is None else deadline - time.monotonic())
            if msg is None:
                break
            out.append(msg)
            if until is not None and status(msg) == until:
                break
        return out

    def _next(self, timeout: float) -> str | None:
        self.sock.settimeout(max(timeout, 0.01))
        if self.transport == "UDP":
            try:
                return self.sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
        while True:
            head, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if sep:
                length = int(header(head.decode(), "Content-Length") or 0)
                if len(rest) >= length:
                    self._buffer = rest[length:]
                    return (head + sep + rest[:length]).decode(errors="replace")
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return None
            if not data:
                return None
            self._buffer += data


def status(msg: str) -> int:
    parts = msg.split(" ", 2)
    return int(parts[1]) if parts[0] == "SIP/2.0" and parts[1].isdigit() else 0


def header(msg: str, name: str) -> str | None:
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def to_tag(msg: str) -> str:
    return (header(msg, "To") or "").split("tag=", 1)[1].split(";", 1)[0]


def steps_of(cluster: Cluster, call_id: str) -> list[str]:
    """The events of the session of ``call_id``, in order."""
    for session in cluster.sessions():
        if session.get("call_id") == call_id:
            return [event for _, event, _ in cluster.steps(session["sid"])]
    return []


@pytest.fixture(params=["UDP", "TCP"])
def phone(request: pytest.FixtureRequest, service: Service) -> Iterator[Phone]:
    far = Phone(service.port, request.param)
    yield far
    far.close()


def test_register_gets_405_with_the_allow_of_the_methods_handled(phone: Phone) -> None:
    phone.send(phone.request("REGISTER", call_id=uuid.uuid4().hex, via_params=";branch=z9hG4bKr1"))
    replies = phone.replies(until=405, limit=10)
    assert [status(r) for r in replies] == [405], replies
    assert header(replies[0], "Allow") == ALLOWED
    assert "tag=" in (header(replies[0], "To") or "")  # 8.2.6.2


def test_a_register_reusing_another_ones_branch_is_answered_too(service: Service) -> None:
    """RFC 4475 3.1.4.12/13: two REGISTERs from different sockets with one branch and
    sent-by but their own Call-ID and CSeq. The second is no retransmission of the first
    (the old code resent the first's 405 to the first's socket): each gets its own 405."""
    via = ";branch=z9hG4bKkdjuw" + uuid.uuid4().hex[:8]
    phones = [Phone(service.port), Phone(service.port)]
    try:
        call_ids = [f"reuse{n}-{uuid.uuid4().hex}" for n in range(2)]
        got = []
        for phone, call_id in zip(phones, call_ids, strict=True):
            reg = phone.request(
                "REGISTER", call_id=call_id, via_params=via, sent_by="saturn.example.com:5060"
            )
            phone.send(reg)
            got.append([(status(r), header(r, "Call-ID")) for r in phone.replies(quiet=1.0)])
        assert got == [[(405, call_ids[0])], [(405, call_ids[1])]]
    finally:
        for phone in phones:
            phone.close()


def test_unknown_method_gets_501_and_unhandled_known_ones_405(phone: Phone) -> None:
    got = {}
    for method in ("FROBNICATE", "SUBSCRIBE", "MESSAGE"):
        call_id = uuid.uuid4().hex
        phone.send(phone.request(method, call_id=call_id, via_params=f";branch=z9hG4bK{call_id}"))
        replies = phone.replies(quiet=1.0, limit=10)
        got[method] = [(status(r), header(r, "Allow")) for r in replies]
    assert got == {
        "FROBNICATE": [(501, ALLOWED)],
        "SUBSCRIBE": [(405, ALLOWED)],
        "MESSAGE": [(405, ALLOWED)],
    }


def test_options_allow_is_the_handled_methods_constant(phone: Phone) -> None:
    call_id = uuid.uuid4().hex
    phone.send(phone.request("OPTIONS", call_id=call_id, via_params=";branch=z9hG4bKo1"))
    replies = phone.replies(until=200, limit=10)
    assert [status(r) for r in replies] == [200]
    assert header(replies[0], "Allow") == ALLOWED == ", ".join(HANDLED_METHODS)
    assert "REGISTER" not in HANDLED_METHODS


def test_invite_accepting_only_text_plain_gets_406_and_never_rings(
    phone: Phone, service: Service
) -> None:
    call_id = uuid.uuid4().hex
    invite = phone.request(
        "INVITE",
        call_id=call_id,
        via_params=f";branch=z9hG4bK{call_id}",
        extra="Accept: text/plain",
        body=SDP,
    )
    phone.send(invite)
    replies = phone.replies(quiet=1.5, limit=10)
    assert [status(r) for r in replies] == [406], replies
    assert header(replies[0], "Accept") == "application/sdp"
    assert steps_of(service.cluster, call_id) == []  # never reached the tables


@pytest.mark.parametrize("via_params", [";branch=1234abcd;rport", ""], ids=["cookieless", "none"])
def test_rfc2543_invite_gets_a_normal_call(service: Service, phone: Phone, via_params: str) -> None:
    """100/180/200, its retransmission absorbed, the ACK reaches the tables (it matched no
    transaction: the 2xx's ACK belongs to the dialog) and the BYE ends the call."""
    call_id = uuid.uuid4().hex
    invite = phone.request("INVITE", call_id=call_id, via_params=via_params, body=SDP)
    phone.send(invite)
    first = phone.replies(until=200, limit=15)
    codes = [status(r) for r in first]
    assert codes[-1] == 200, first
    assert 180 in codes, first
    phone.send(invite)  # a retransmission once the 200 went out: absorbed (Accepted)
    again = phone.replies(quiet=1.0, limit=5)
    assert all(status(r) == 200 for r in again), again  # at most the dialog's 2xx resends
    tag = to_tag(first[-1])
    contact = (header(first[-1], "Contact") or "").strip("<>")
    ack = phone.request("ACK", call_id=call_id, via_params=via_params, to_tag=tag, uri=contact)
    phone.send(ack)
    assert wait_for(lambda: "Ack" in steps_of(service.cluster, call_id), 10)
    bye = phone.request(
        "BYE", call_id=call_id, via_params=via_params, to_tag=tag, cseq=2, uri=contact
    )
    phone.send(bye)
    done = phone.replies(quiet=1.0, limit=10)
    assert 200 in [status(r) for r in done if header(r, "CSeq") == "2 BYE"], done
    steps = steps_of(service.cluster, call_id)
    assert (steps.count("Invite"), steps.count("Ack"), "Bye" in steps) == (1, 1, True), steps


def test_rfc2543_invite_without_max_forwards_or_from_tag_is_accepted(
    service: Service, phone: Phone
) -> None:
    """RFC 4475 3.2.1: no magic cookie, no From tag, no Max-Forwards: processed, not 400."""
    call_id = uuid.uuid4().hex
    invite = phone.request("INVITE", call_id=call_id, from_tag="", max_forwards=False, body=SDP)
    phone.send(invite)
    replies = phone.replies(until=200, limit=15)
    assert [status(r) for r in replies][-1] == 200, replies
    tag = to_tag(replies[-1])
    contact = (header(replies[-1], "Contact") or "").strip("<>")
    phone.send(
        phone.request(
            "ACK", call_id=call_id, from_tag="", to_tag=tag, uri=contact, max_forwards=False
        )
    )
    phone.send(
        phone.request(
            "BYE", call_id=call_id, from_tag="", to_tag=tag, cseq=2, uri=contact, max_forwards=False
        )
    )
    done = phone.replies(quiet=1.0, limit=10)
    assert 200 in [status(r) for r in done if header(r, "CSeq") == "2 BYE"], done


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_rfc2543_cancel_and_the_ack_of_the_487_are_matched(
    redis_url: str, tmp_path: Path, transport: str
) -> None:
    """A cookieless INVITE left ringing (the application decides), CANCELled: 200 to the
    CANCEL, 487 to the INVITE through its transaction (a retransmitted INVITE gets the 487
    again, not a 100), whose ACK (same Via, the 487's To tag) the INVITE transaction
    absorbs: the tables see no ACK, and (UDP) a later INVITE retransmission is absorbed in
    Confirmed."""
    cluster = Cluster(redis_url, tmp_path)
    try:
        port = cluster.start_run("--answer", "app", tcp=True)
        phone = Phone(port, transport)
        call_id = uuid.uuid4().hex
        via = ";branch=2543inv"
        invite = phone.request("INVITE", call_id=call_id, via_params=via, body=SDP)
        phone.send(invite)
        assert wait_for(lambda: "Invite" in steps_of(cluster, call_id), 15)
        phone.send(phone.request("CANCEL", call_id=call_id, via_params=via))
        replies = phone.replies(until=487, limit=15)
        finals = {(header(r, "CSeq"), status(r)) for r in replies if status(r) >= 200}
        assert finals == {("1 CANCEL", 200), ("1 INVITE", 487)}, replies
        tag = to_tag(replies[-1])
        phone.send(invite)
        again = [status(r) for r in phone.replies(quiet=1.0, limit=10)]
        assert again, "a retransmitted INVITE is answered with the last response"
        assert set(again) == {487}, again
        phone.send(phone.request("ACK", call_id=call_id, via_params=via, to_tag=tag))
        phone.replies(quiet=0.5, limit=5)  # a 487 resend already on its way
        if transport == "UDP":
            phone.send(invite)
            assert phone.replies(quiet=1.5, limit=5) == []
        assert "Cancel" in steps_of(cluster, call_id)
        assert "Ack" not in steps_of(cluster, call_id)
        phone.close()
    finally:
        cluster.stop_all()
        cluster.cleanup()


def test_ringing_and_answer_copy_the_record_route(phone: Phone) -> None:
    """Behind a record-routing proxy: the 180 and the 200 carry the INVITE's Record-Route
    values in order (RFC 3261 12.1.1), so the caller's ACK and BYE go through the proxy."""
    call_id = uuid.uuid4().hex
    routes = "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>"
    invite = phone.request(
        "INVITE", call_id=call_id, via_params=";branch=z9hG4bK-rr", body=SDP, extra=routes
    )
    phone.send(invite)
    replies = phone.replies(until=200, limit=15)
    answers = [r for r in replies if status(r) in (180, 200)]
    assert [status(r) for r in answers] == [180, 200], replies
    for reply in answers:  # the same values in the same order, on one line or several
        lines = reply.split("\r\n\r\n", 1)[0].split("\r\n")
        values = [v.split(":", 1)[1] for v in lines if v.lower().startswith("record-route:")]
        routes_seen = [r.strip() for v in values for r in v.split(",")]
        assert routes_seen == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"], reply
    tag = to_tag(answers[-1])
    contact = (header(answers[-1], "Contact") or "").strip("<>")
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        phone.send(
            phone.request(
                method,
                call_id=call_id,
                via_params=f";branch=z9hG4bK-rr{cseq}",
                to_tag=tag,
                cseq=cseq,
                uri=contact,
            )
        )
    assert 200 in [status(r) for r in phone.replies(quiet=1.0, limit=10)]
