"""Requests the default table once left unanswered, from a raw-socket phone against a live
``sessiond run``: a BYE on the early dialog (200 to it, 487 to the INVITE, RFC 3261 15.1.2)
and a NOTIFY arriving while our BYE is out (answered 200)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .harness import Cluster, free_port, free_rtp_range, wait_for, wait_listening
from .test_every_request_answered import SDP, Phone, header, status, steps_of, to_tag

pytestmark = [pytest.mark.redis]


@contextmanager
def _run(redis_url: str, tmp: Path, *options: str) -> Iterator[tuple[Cluster, int]]:
    cluster = Cluster(redis_url, tmp)
    port = free_port()
    try:
        cluster.start(
            "run",
            "run",
            *cluster.common(),
            "--listen",
            f"udp:127.0.0.1:{port}",
            "--rtp-ports",
            free_rtp_range(),
            *options,
        )
        try:
            wait_listening(port)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- sessiond run:\n{cluster.log('run')[-3000:]}") from None
        yield cluster, port
    finally:
        cluster.stop_all()
        cluster.cleanup()


def test_a_bye_on_the_early_dialog_gets_200_and_the_invite_487(
    redis_url: str, tmp_path: Path
) -> None:
    """The application never answers (``--answer app``): the caller gives up with a BYE on
    the early dialog of our 180 (not a CANCEL). Before the fix the BYE got 500 and the
    INVITE no final response at all."""
    with _run(redis_url, tmp_path, "--answer", "app") as (cluster, port):
        phone = Phone(port)
        try:
            call_id = uuid.uuid4().hex
            via = f";branch=z9hG4bK{call_id[:12]}"
            phone.send(phone.request("INVITE", call_id=call_id, via_params=via, body=SDP))
            ringing = phone.replies(until=180, limit=15)
            assert [status(r) for r in ringing][-1] == 180, ringing
            tag = to_tag(ringing[-1])
            bye = phone.request(
                "BYE",
                call_id=call_id,
                via_params=f";branch=z9hG4bKbye{call_id[:8]}",
                to_tag=tag,
                cseq=2,
            )
            phone.send(bye)
            replies = phone.replies(quiet=1.5, limit=15)
            finals = {(header(r, "CSeq"), status(r)) for r in replies if status(r) >= 200}
            assert finals == {("2 BYE", 200), ("1 INVITE", 487)}, replies
            final = next(r for r in replies if status(r) == 487)
            phone.send(phone.request("ACK", call_id=call_id, via_params=via, to_tag=to_tag(final)))
            assert wait_for(lambda: "Bye" in steps_of(cluster, call_id), 10)
        finally:
            phone.close()


def test_a_notify_while_our_bye_is_out_is_answered(redis_url: str, tmp_path: Path) -> None:
    """A routing rule answers, plays one second of tone and hangs up: we hold back the 200
    to its BYE (the session stays Terminating) and send an in-dialog NOTIFY, a transfer
    report. Before the fix it got no answer at all."""
    (tmp_path / "routes.yaml").write_text(
        'rules:\n  - match: {to: "sip:*"}\n    do: {play: {tone: 440, seconds: 1}}\n'
    )
    with _run(redis_url, tmp_path, "--routes", "routes.yaml") as (cluster, port):
        phone = Phone(port)
        try:
            call_id = uuid.uuid4().hex
            via = f";branch=z9hG4bK{call_id[:12]}"
            phone.send(phone.request("INVITE", call_id=call_id, via_params=via, body=SDP))
            answered = phone.replies(until=200, limit=15)
            assert [status(r) for r in answered][-1] == 200, answered
            tag = to_tag(answered[-1])
            contact = (header(answered[-1], "Contact") or "").strip("<>")
            phone.send(
                phone.request(
                    "ACK",
                    call_id=call_id,
                    to_tag=tag,
                    uri=contact,
                    via_params=f";branch=z9hG4bKack{call_id[:8]}",
                )
            )
            byes = [m for m in phone.replies(quiet=6.0, limit=15) if m.startswith("BYE ")]
            assert byes, "sessiond hangs up once the tone has played"
            notify = phone.request(
                "NOTIFY",
                call_id=call_id,
                via_params=f";branch=z9hG4bKnotify{call_id[:8]}",
                to_tag=tag,
                cseq=2,
                uri=contact,
                extra="Event: refer\r\nSubscription-State: terminated;reason=noresource",
            )
            phone.send(notify)
            replies = phone.replies(quiet=1.5, limit=10)
            answers = [status(r) for r in replies if header(r, "CSeq") == "2 NOTIFY"]
            assert answers == [200], replies
            assert "Notify" in steps_of(cluster, call_id)
        finally:
            phone.close()


def _reply(request: bytes, code: int, reason: str, tag: str, contact: str = "") -> bytes:
    """A response to ``request``: its Via, From, To (with our tag), Call-ID and CSeq."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    keep = [
        line
        for line in head.split("\r\n")[1:]
        if line.split(":", 1)[0].lower() in ("via", "from", "call-id", "cseq")
    ]
    to = next(line for line in head.split("\r\n") if line.lower().startswith("to:"))
    if ";tag=" not in to:
        to += f";tag={tag}"
    extra = [f"Contact: <{contact}>"] if contact else []
    return "\r\n".join(
        [f"SIP/2.0 {code} {reason}", *keep, to, *extra, "Content-Length: 0", "", ""]
    ).encode()


def test_our_call_given_up_before_any_1xx_cancels_only_after_one(
    redis_url: str, tmp_path: Path
) -> None:
    """RFC 3261 9.1: we place a call, the callee sends nothing yet (not even 100 Trying), and
    we hang up. No CANCEL may go before a provisional response: it goes once the 180 comes,
    and the call ends with the 487. Before the fix the CANCEL went at once."""
    from sessiond.cli.main import main

    with _run(redis_url, tmp_path, "--answer", "auto") as (cluster, _port):
        callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        callee.bind(("127.0.0.1", 0))
        callee.settimeout(0.3)
        try:
            target = f"sip:bob@127.0.0.1:{callee.getsockname()[1]}"
            assert main(["ctl", *cluster.common(), "call", target]) == 0
            invite, edge = _receive(callee, "INVITE", 10)
            assert wait_for(lambda: len(cluster.sessions()) == 1, 10)
            (session,) = cluster.sessions()
            assert main(["ctl", *cluster.common(), "hangup", session["sid"]]) == 0
            assert wait_for(lambda: cluster.sessions()[0]["state"] == "Withdrawing", 10)
            early = _drain(callee, 2.0)
            assert [m.split(b" ", 1)[0] for m in early if not m.startswith(b"SIP/")] in (
                [],
                [b"INVITE"] * len(early),  # timer A retransmissions only
            ), early
            callee.sendto(_reply(invite, 180, "Ringing", "callee1"), edge)
            cancel, _ = _receive(callee, "CANCEL", 10)
            callee.sendto(_reply(cancel, 200, "OK", "callee1"), edge)
            callee.sendto(_reply(invite, 487, "Request Terminated", "callee1"), edge)
            _receive(callee, "ACK", 10)
            assert wait_for(lambda: cluster.sessions()[0]["state"] == "Terminated", 10)
        finally:
            callee.close()


def _receive(sock: socket.socket, method: str, seconds: float) -> tuple[bytes, tuple[str, int]]:
    """The first ``method`` request that arrives within ``seconds``, and where it came from."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if data.startswith(f"{method} ".encode()):
            return data, source
    raise AssertionError(f"no {method} within {seconds} s")


def _drain(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that arrives within ``seconds``."""
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(65535)[0])
        except TimeoutError:
            continue
    return got
