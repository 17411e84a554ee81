"""Digest authentication against RFC 2617 / RFC 7616 example vectors, and the server side."""

from __future__ import annotations

import pytest

from sessiond.sip.digest import (
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    compute_ha1,
    digest_response,
    parse_auth,
)
from sessiond.sip.errors import AuthError
from sessiond.sip.message import SipRequest, make_response

RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc2617_section_3_5_vector() -> None:
    ha1 = compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    response = digest_response(
        algorithm="MD5",
        ha1=ha1,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(alg: str, expected: str) -> None:
    challenge = Challenge.parse(RFC7616_CHALLENGE.format(alg=alg))
    assert challenge.qop == ("auth", "auth-int")
    client = DigestClient("Mufasa", "Circle of Life")
    cred = client.authorize(challenge, "GET", "/dir/index.html", cnonce=RFC7616_CNONCE)
    assert cred.response == expected
    assert cred.nc == "00000001"
    assert cred.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    again = Credentials.parse(str(cred))
    assert again == cred


def test_nonce_count_increments_per_nonce() -> None:
    challenge = Challenge.parse(RFC7616_CHALLENGE.format(alg="MD5"))
    client = DigestClient("Mufasa", "Circle of Life")
    first = client.authorize(challenge, "REGISTER", "sip:example.org")
    second = client.authorize(challenge, "REGISTER", "sip:example.org")
    assert (first.nc, second.nc) == ("00000001", "00000002")
    assert first.cnonce != second.cnonce


def test_server_round_trip_stale_and_failures() -> None:
    server = DigestServer("sip.example.org", b"k" * 32, nonce_ttl=60)
    challenge = Challenge.parse(str(server.challenge(1000.0)))
    assert challenge.algorithm == "SHA-256"
    ha1 = compute_ha1("SHA-256", "alice", "sip.example.org", "s3cret")
    users = {"alice": ha1}
    good = DigestClient("alice", "s3cret").authorize(challenge, "INVITE", "sip:bob@example.org")
    verdict = server.verify(str(good), "INVITE", 1010.0, users.get)
    assert verdict.ok
    assert verdict.username == "alice"
    assert server.verify(str(good), "BYE", 1010.0, users.get).reason == "wrong response"
    late = server.verify(str(good), "INVITE", 1100.0, users.get)
    assert (late.ok, late.stale) == (False, True)
    bad = DigestClient("alice", "nope").authorize(challenge, "INVITE", "sip:bob@example.org")
    assert not server.verify(str(bad), "INVITE", 1010.0, users.get).ok
    other = DigestServer("sip.example.org", b"x" * 32)
    assert other.verify(str(good), "INVITE", 1010.0, users.get).reason == "foreign nonce"
    assert server.verify("Digest garbage", "INVITE", 1010.0, users.get).reason
    replay = server.verify(str(good), "INVITE", 1010.0, users.get, seen=lambda c: True)
    assert replay.reason == "replayed nonce count"


def test_forged_nonce_timestamp_is_rejected() -> None:
    server = DigestServer("r", b"secret")
    nonce = server.make_nonce(0.0)
    assert server.nonce_age(nonce, 10.0) == 10.0
    assert server.nonce_age(nonce[:-4] + "AAAA", 10.0) is None
    assert server.nonce_age("!!!", 10.0) is None


def test_parse_auth_handles_commas_in_quotes_and_rejects_garbage() -> None:
    scheme, params = parse_auth('Digest realm="a, b", nonce="n\\"x", qop=auth')
    assert scheme == "Digest"
    assert params == {"realm": "a, b", "nonce": 'n"x', "qop": "auth"}
    with pytest.raises(AuthError):
        parse_auth('Digest realm="unterminated')
    with pytest.raises(AuthError):
        Challenge.parse('Basic realm="x"')
    with pytest.raises(AuthError):
        DigestClient("u", "p").authorize(
            Challenge("r", "n", qop=("auth-int",)), "INVITE", "sip:x@y"
        )


def test_client_answers_401_and_407_with_the_right_header() -> None:
    req = SipRequest.create(
        "REGISTER",
        "sip:example.org",
        [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bKr"),
            ("From", "<sip:alice@example.org>;tag=1"),
            ("To", "<sip:alice@example.org>"),
            ("Call-ID", "reg"),
            ("CSeq", "1 REGISTER"),
        ],
    )
    server = DigestServer("example.org", b"s" * 16)
    client = DigestClient("alice", "pw")
    ha1 = {"alice": compute_ha1("SHA-256", "alice", "example.org", "pw")}
    for status, challenge_name, answer_name in [
        (401, "WWW-Authenticate", "Authorization"),
        (407, "Proxy-Authenticate", "Proxy-Authorization"),
    ]:
        resp = make_response(
            req, status, to_tag="t", headers=[(challenge_name, str(server.challenge(0.0)))]
        )
        name, value = client.answer(resp, "REGISTER", "sip:example.org")
        assert name == answer_name
        assert server.verify(value, "REGISTER", 1.0, ha1.get).ok
    with pytest.raises(AuthError):
        client.answer(make_response(req, 200, to_tag="t"), "REGISTER", "sip:example.org")
    with pytest.raises(AuthError):
        client.answer(make_response(req, 401, to_tag="t"), "REGISTER", "sip:example.org")
