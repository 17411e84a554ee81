"""The registration client and the OPTIONS pinger, sans-I/O, on a fake clock; challenges are
checked by a real :class:`DigestServer`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiond.edge.credentials import Account, CredentialsError, CredentialStore, load_credentials
from sessiond.sip.digest import Challenge, DigestServer, compute_ha1
from sessiond.sip.keepalive import Pinger
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.registration import Local, Registration, refresh_delay

LOCAL = Local("UDP", "127.0.0.1", 5999)
SERVER = DigestServer("reg.test", b"k" * 32, algorithm="MD5")
HA1 = compute_ha1("MD5", "alice", "reg.test", "secret")


def registration(**kwargs: object) -> Registration:
    accounts = {"reg.test": ("alice", "secret")}
    return Registration("sip:alice@reg.test", LOCAL, credentials=accounts.get, **kwargs)  # type: ignore[arg-type]


def challenge(req: SipRequest, now: float, *, stale: bool = False, nonce: str = "") -> SipResponse:
    ch = SERVER.challenge(now, stale=stale)
    if nonce:
        ch = Challenge(ch.realm, nonce, ch.algorithm, ch.qop, None, stale)
    return make_response(req, 401, to_tag="r1", headers=[("WWW-Authenticate", str(ch))])


def verified(req: SipRequest, now: float) -> bool:
    value = req.header("authorization")
    assert value is not None, bytes(req).decode()
    return SERVER.verify(value, "REGISTER", now, {"alice": HA1}.get).ok


def ok(req: SipRequest, **headers: str) -> SipResponse:
    return make_response(req, 200, to_tag="r1", headers=list(headers.items()))


@pytest.mark.parametrize(
    ("granted", "delay"), [(3600, 2880.0), (60, 48.0), (20, 15.0), (10, 5.0), (4, 2.0)]
)
def test_refresh_delay_is_80_percent_or_5_s_early_but_at_least_half(
    granted: int, delay: float
) -> None:
    assert refresh_delay(granted) == delay


def test_challenge_answered_then_granted_expiry_and_refresh_with_cached_credentials() -> None:
    reg = registration(expires=300)
    (first,) = reg.start(10.0)
    assert first.method == "REGISTER"
    assert first.uri == "sip:reg.test"
    assert first.header("expires") == "300"
    assert first.header("authorization") is None
    assert first.header("contact") == "<sip:alice@127.0.0.1:5999>"
    (second,) = reg.on_response(challenge(first, 10.0), 10.1)
    assert verified(second, 10.1)
    assert second.call_id == first.call_id
    assert second.from_tag == first.from_tag
    assert second.cseq is not None
    assert second.cseq.seq == 2
    contact = "<sip:alice@127.0.0.1:5999>;expires=4, <sip:other@10.0.0.1>;expires=99"
    assert reg.on_response(ok(second, Contact=contact, Expires="50"), 10.2) == []
    assert (reg.state, reg.expires, reg.expires_at) == ("registered", 4, 14.1)
    assert reg.get_timer() == 12.1  # max(4/2, min(4 - 5, 3.2)) after sending
    assert reg.handle_timer(12.0) == []
    (refresh,) = reg.handle_timer(12.1)
    assert verified(refresh, 12.1)
    assert "nc=00000002" in (refresh.header("authorization") or "")
    assert reg.on_response(ok(refresh, Expires="60"), 12.2) == []
    assert (reg.expires, reg.registrations, reg.get_timer()) == (60, 2, 12.1 + 48)


def test_the_same_nonce_twice_is_refused_credentials_but_stale_is_answered_again() -> None:
    reg = registration()
    (first,) = reg.start(0.0)
    (second,) = reg.on_response(challenge(first, 0.0, nonce="n1"), 0.1)
    (third,) = reg.on_response(challenge(second, 0.1, nonce="n1", stale=True), 0.2)
    assert third.header("authorization") is not None
    assert reg.on_response(challenge(third, 0.2, nonce="n1"), 0.3) == []
    assert (reg.state, reg.last_code, reg.last_reason) == ("retrying", 401, "credentials refused")
    assert reg.get_timer() == 0.3 + 30


def test_no_credentials_for_the_realm_fails() -> None:
    reg = Registration("sip:bob@reg.test", LOCAL, credentials=lambda realm: None)
    (first,) = reg.start(0.0)
    assert reg.on_response(challenge(first, 0.0), 0.1) == []
    assert reg.state == "retrying"
    assert "no credentials for realm 'reg.test'" in reg.last_reason


def test_423_asks_again_with_min_expires() -> None:
    reg = registration(expires=30)
    (first,) = reg.start(0.0)
    too_brief = make_response(first, 423, headers=[("Min-Expires", "120")])
    (second,) = reg.on_response(too_brief, 0.1)
    assert second.header("expires") == "120"
    assert reg.on_response(make_response(second, 423, headers=[("Min-Expires", "120")]), 0.2) == []
    assert reg.state == "retrying"


def test_failures_back_off_doubling_up_to_the_maximum_or_retry_after() -> None:
    reg = registration(retry_base=10, retry_max=25)
    (req,) = reg.start(0.0)
    now, delays = 0.0, []
    for _ in range(3):
        reg.on_response(make_response(req, 500), now)
        delays.append((reg.get_timer() or 0) - now)
        now = reg.get_timer() or 0
        (req,) = reg.handle_timer(now)
        assert reg.state == "registering"
    reg.on_response(make_response(req, 503, headers=[("Retry-After", "7")]), now)
    assert delays == [10, 20, 25]
    assert reg.get_timer() == now + 7
    assert reg.on_timeout(req.cseq.seq if req.cseq else 0, now) == []  # not the newest: 503 was


def test_a_response_to_an_older_request_is_ignored() -> None:
    reg = registration()
    (first,) = reg.start(0.0)
    (second,) = reg.on_response(challenge(first, 0.0), 0.1)
    assert reg.on_response(ok(first), 0.2) == []
    assert reg.state == "registering"


def test_unregister_sends_expires_0_and_answers_its_challenge() -> None:
    reg = registration()
    (first,) = reg.start(0.0)
    reg.on_response(ok(first, Expires="3600"), 0.1)
    (bye,) = reg.unregister(5.0)
    assert bye.header("expires") == "0"
    assert bye.header("contact") == first.header("contact")
    (again,) = reg.on_response(challenge(bye, 5.0), 5.1)
    assert again.header("expires") == "0"
    assert verified(again, 5.1)
    assert not reg.done
    assert reg.on_response(ok(again), 5.2) == []
    assert reg.done
    assert reg.get_timer() is None


def test_unregister_without_a_binding_sends_nothing() -> None:
    reg = registration()
    (first,) = reg.start(0.0)
    reg.on_timeout(1, 32.0)
    assert reg.state == "retrying"
    assert reg.last_code == 408
    assert reg.unregister(33.0) == []
    assert reg.done


def test_pinger_measures_round_trips_and_counts_failures_in_a_row() -> None:
    pinger = Pinger("sip:reg.test", LOCAL, interval=5, from_uri="sip:alice@reg.test")
    (a,) = pinger.start(0.0)
    assert a.method == "OPTIONS"
    assert a.uri == "sip:reg.test"
    assert pinger.get_timer() == 5
    pinger.on_response(make_response(a, 404), 0.25)
    assert (pinger.reachable, pinger.rtt, pinger.last_code) == (True, 0.25, 404)
    (b,) = pinger.handle_timer(5.0)
    (c,) = pinger.handle_timer(10.0)
    assert b.call_id != c.call_id
    pinger.on_timeout(b.call_id or "")
    pinger.on_timeout(c.call_id or "")
    assert (pinger.reachable, pinger.failures) == (False, 2)
    (d,) = pinger.handle_timer(15.0)
    pinger.on_response(make_response(d, 100), 15.1)
    assert pinger.failures == 2
    pinger.on_response(make_response(d, 200), 15.2)
    assert (pinger.reachable, pinger.failures, pinger.answered) == (True, 0, 2)


def test_credentials_file_and_matching(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text(
        "# ours\n"
        "user=trunk password='two words'\n"
        "user=alice password=a1 realm=pbx\n"
        "user=bob password=b1 realm=pbx  # bob at the pbx\n"
    )
    store = load_credentials(path)
    assert store.find("pbx", "bob") == Account("bob", "b1", "pbx")
    assert store.find("pbx", "carol") == Account("alice", "a1", "pbx")
    assert store.find("elsewhere", "bob") == Account("trunk", "two words", None)
    assert "two words" not in repr(store.accounts)
    assert CredentialStore([Account("x", "y", "r")]).find("other") is None


def test_bad_credentials_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("user=a password=b\n\nalice:secret\nuser=c\nuser=d password='open\n")
    with pytest.raises(CredentialsError) as info:
        load_credentials(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:3", f"{path}:4", f"{path}:5"]
    with pytest.raises(CredentialsError, match=r"missing:0: cannot read"):
        load_credentials(tmp_path / "missing")
