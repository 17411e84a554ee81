"""SDES (RFC 4568): a=crypto grammar, suite selection, SDP sections and the SRTP policy."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.media.errors import CryptoError, NoCommonCrypto, OfferAnswerError, SdpError
from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.sdes import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    CryptoAttribute,
    KeyParams,
    NegotiatedCrypto,
    Suite,
    accept_answer,
    make_offer,
    redact_keys,
    select_answer,
)
from sessiond.media.sdes_sdp import (
    SrtpPolicy,
    accept_section,
    answer_section,
    crypto_values,
    is_secure,
    offer_section,
    with_crypto,
    without_crypto,
)
from sessiond.media.sdp import MediaDescription, SessionDescription

from .sdp_samples import crlf

# RFC 4568 section 4 / 5.1 / 6.x examples, and what real peers send (no MKI, 2^31 lifetime).
RFC_EXAMPLES = [
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
    "1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
    "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
    "1 AES_CM_128_HMAC_SHA1_80 "
    "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;"
    "inline:QUJjZGVmZ2hpSktMTU5PUFFSU1RVVldYWVpbXF1e|2^20|2:4 FEC_ORDER=FEC_SRTP",
    "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^31",
    "2 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj KDR=0 WSH=128",
]
KEY30 = "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"  # 30 bytes: AES_CM key || salt
KEY28 = base64.b64encode(bytes(range(28))).decode()
KEY44 = base64.b64encode(bytes(range(44))).decode()


@pytest.mark.parametrize("value", RFC_EXAMPLES)
def test_rfc_examples_round_trip(value: str) -> None:
    attr = CryptoAttribute.parse(value)
    assert attr.wire() == value
    assert CryptoAttribute.parse(attr.wire()) == attr


def test_parsed_fields() -> None:
    attr = CryptoAttribute.parse(RFC_EXAMPLES[0])
    assert (attr.tag, attr.suite) == (1, AES_CM_128_HMAC_SHA1_80)
    assert attr.keys[0].lifetime == 2**20
    assert attr.keys[0].mki == (1, 32)
    assert attr.key == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    two = CryptoAttribute.parse(RFC_EXAMPLES[3])
    assert [k.mki for k in two.keys] == [(1, 4), (2, 4)]
    assert two.session_params == ("FEC_ORDER=FEC_SRTP",)
    decimal = CryptoAttribute.parse(f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1000|5:2")
    assert (decimal.keys[0].lifetime, decimal.keys[0].mki) == (1000, (5, 2))
    assert decimal.wire().endswith("|1000|5:2")


@pytest.mark.parametrize(
    ("suite", "key"),
    [
        (AES_CM_128_HMAC_SHA1_80, KEY30),
        (AES_CM_128_HMAC_SHA1_32, KEY30),
        (AEAD_AES_128_GCM, KEY28),
        (AEAD_AES_256_GCM, KEY44),
    ],
)
def test_each_suite_key_length(suite: Suite, key: str) -> None:
    attr = CryptoAttribute.parse(f"1 {suite} inline:{key}")
    assert attr.suite == suite
    assert attr.wire() == f"1 {suite} inline:{key}"
    # Peers that drop the base64 padding are understood too.
    assert CryptoAttribute.parse(f"1 {suite} inline:{key.rstrip('=')}") == attr


MALFORMED = [
    ("", "needs a tag"),
    ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
    (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", "tag must be 1 to 9 digits"),
    (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", "tag must be 1 to 9 digits"),
    (f"1 AES-CM inline:{KEY30}", "suite name is malformed"),
    (f"1 F8_128_HMAC_SHA1_80 inline:{KEY30}", "suite F8_128_HMAC_SHA1_80 is not supported"),
    (f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY30}", "key method must be 'inline:'"),
    (f"1 AES_CM_128_HMAC_SHA1_80 {KEY30}", "key method must be 'inline:', got none$"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:****", "key is not base64"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:QUJD=A", "key is not base64"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:QUJD", "must be 30 bytes, got 3"),
    (f"1 AEAD_AES_256_GCM inline:{KEY30}", "must be 44 bytes, got 30"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^49", "outside 1..2^48"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|0", "outside 1..2^48"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^x", "lifetime must be N or 2^N"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|2^10", "two lifetimes"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4|2^20", "MKI must come last"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1|2|3", "more than a lifetime and an MKI"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:0", "LENGTH 1..128"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:129", "LENGTH 1..128"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|256:1", "does not fit"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}", "several keys"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:1;inline:{KEY30}|2:2", "several keys"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} KDR=25", "session parameter is malformed"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} WSH=10", "session parameter is malformed"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} FEC_ORDER=X", "session parameter is malformed"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP=1", "is malformed"),
]


@pytest.mark.parametrize(("value", "message"), MALFORMED)
def test_malformed_attribute_is_a_one_line_crypto_error(value: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message.replace("^", r"\^").replace("*", r"\*")) as info:
        CryptoAttribute.parse(value)
    text = str(info.value)
    assert "\n" not in text
    assert KEY30 not in text
    assert KEY30[:20] not in text
    assert isinstance(info.value, SdpError)


NEAR_VALID = st.builds(
    "{} {} inline:{}{}{}".format,
    st.sampled_from(["1", "0", "123456789", "x"]),
    st.sampled_from(["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", "AEAD_AES_128_GCM"]),
    st.sampled_from([KEY30, KEY28, KEY44, KEY28.rstrip("=")]),
    st.text(alphabet="|:^;0123456789 ", max_size=12),
    st.sampled_from(["", " KDR=0", " WSH=64", " UNENCRYPTED_SRTCP", " KDR=99", " X=\x00"]),
)


@given(st.one_of(st.text(max_size=120), NEAR_VALID))
def test_any_text_parses_or_raises_crypto_error(value: str) -> None:
    try:
        attr = CryptoAttribute.parse(value)
    except CryptoError:
        return
    assert CryptoAttribute.parse(attr.wire()) == attr


def test_keys_never_appear_in_repr_or_str() -> None:
    attr = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^31")
    negotiated = NegotiatedCrypto(attr.suite, 1, attr.key, b"\x01" * 30)
    for text in (repr(attr), str(attr), repr(attr.keys[0]), repr(negotiated), str(negotiated)):
        assert KEY30 not in text
        assert repr(attr.key) not in text
        assert attr.key.hex() not in text
        assert "hidden" in text
    assert attr.redacted() == "1 AES_CM_128_HMAC_SHA1_80 inline:<hidden>|2^31"
    assert repr(KeyParams(b"k" * 30, 2**31)) == (
        "KeyParams(key_salt=<30 bytes hidden>, lifetime=2147483648, mki=None)"
    )


def test_redact_keys_hides_every_key_in_a_body() -> None:
    body = SAVP_OFFER.decode()
    hidden = redact_keys(body)
    assert KEY30 not in hidden
    assert hidden.count("inline:<hidden>|2^") == 3
    assert redact_keys(f"a=crypto:1 X INLINE:{KEY30};inline:{KEY28}") == (
        "a=crypto:1 X INLINE:<hidden>;inline:<hidden>"
    )


def test_offer_has_one_line_per_suite_with_fresh_keys() -> None:
    offer = make_offer()
    assert [a.tag for a in offer] == [1, 2, 3, 4]
    assert [a.suite for a in offer] == [
        AES_CM_128_HMAC_SHA1_80,
        AES_CM_128_HMAC_SHA1_32,
        AEAD_AES_256_GCM,
        AEAD_AES_128_GCM,
    ]
    assert len({a.key for a in offer}) == 4
    assert [len(a.key) for a in offer] == [30, 30, 44, 28]
    assert all(CryptoAttribute.parse(a.wire()) == a for a in offer)
    with pytest.raises(CryptoError, match="at least one crypto suite"):
        make_offer(())


def test_answer_picks_first_usable_line_with_same_tag_and_own_key() -> None:
    offered = [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4",  # MKI: refused
        "2 AES_256_CM_HMAC_SHA1_80 inline:" + KEY44,  # suite libsrtp lacks here
        "3 AES_CM_128_HMAC_SHA1_32 garbage",  # malformed
        f"4 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP",  # refused parameter
        f"4 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} NEW_THING=1",  # unknown parameter
        f"5 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^31",
        f"6 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",
    ]
    ours, negotiated = select_answer(offered)
    assert (ours.tag, ours.suite) == (5, AES_CM_128_HMAC_SHA1_32)
    assert (negotiated.tag, negotiated.suite) == (5, AES_CM_128_HMAC_SHA1_32)
    assert negotiated.remote_key == base64.b64decode(KEY30)
    assert negotiated.local_key == ours.key != negotiated.remote_key
    assert len(ours.keys) == 1
    assert ours.keys[0].lifetime is None
    assert not ours.session_params


def test_answer_respects_enabled_suites() -> None:
    offered = [f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}", f"2 AEAD_AES_128_GCM inline:{KEY28}"]
    ours, _ = select_answer(offered, suites=[AEAD_AES_128_GCM])
    assert (ours.tag, ours.suite, len(ours.key)) == (2, AEAD_AES_128_GCM, 28)
    optional = f"3 AEAD_AES_128_GCM inline:{KEY28} -opt=1 WSH=256 FEC_ORDER=SRTP_FEC KDR=0"
    ours, _ = select_answer([optional])
    assert (ours.tag, ours.suite, len(ours.key)) == (3, AEAD_AES_128_GCM, 28)


def test_no_usable_line_lists_every_reason_on_one_line() -> None:
    offered = [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4",
        f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} KDR=3",
        "3 F8_128_HMAC_SHA1_80 inline:" + KEY30,
    ]
    with pytest.raises(NoCommonCrypto) as info:
        select_answer(offered)
    text = str(info.value)
    assert "tag 1: MKI is not supported" in text
    assert "tag 2: session parameter KDR is not supported" in text
    assert "F8_128_HMAC_SHA1_80 is not supported" in text
    assert "\n" not in text
    assert KEY30 not in text
    assert isinstance(info.value, OfferAnswerError)
    assert info.value.sip_status == 488
    with pytest.raises(NoCommonCrypto, match="none offered"):
        select_answer([])


def test_offerer_accepts_matching_answer_only() -> None:
    offer = make_offer()
    ours, answerer = select_answer([a.wire() for a in offer][1:])  # answerer skips tag 1
    negotiated = accept_answer(offer, [ours.wire()])
    assert (negotiated.tag, negotiated.suite) == (2, AES_CM_128_HMAC_SHA1_32)
    assert negotiated.local_key == answerer.remote_key == offer[1].key
    assert negotiated.remote_key == answerer.local_key
    wrong_suite = ours.wire().replace("_32", "_80")
    with pytest.raises(NoCommonCrypto, match="matches no offered line"):
        accept_answer(offer, [wrong_suite])
    with pytest.raises(NoCommonCrypto, match="matches no offered line"):
        accept_answer(offer, ["9" + ours.wire()[1:]])
    with pytest.raises(NoCommonCrypto, match="exactly one a=crypto line, got 2"):
        accept_answer(offer, [ours.wire(), ours.wire()])
    with pytest.raises(NoCommonCrypto, match="not base64"):
        accept_answer(offer, ["2 AES_CM_128_HMAC_SHA1_32 inline:!!"])


# -- SDP sections and the policy ----------------------------------------------------------------

SAVP_OFFER = crlf(f"""
    v=0
    o=bob 1 1 IN IP4 203.0.113.9
    s=-
    c=IN IP4 203.0.113.9
    t=0 0
    m=audio 4000 RTP/SAVP 0 101
    a=rtpmap:101 telephone-event/8000
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4
    a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^31
    a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^31
    a=sendrecv
""")


def our_answer_section(offer: SessionDescription) -> MediaDescription:
    """What offer/answer builds today for the same stream offered as plain RTP/AVP."""
    plain = SessionDescription(offer.session_lines, (without_crypto(offer.media[0]),))
    negotiator = MediaNegotiator("198.51.100.1", 20000, rng=random.Random(3))
    answer, _ = negotiator.create_answer(plain)
    return answer.media[0]


def test_section_helpers_keep_other_lines_in_place() -> None:
    section = SessionDescription.parse(SAVP_OFFER).media[0]
    assert is_secure(section)
    assert len(crypto_values(section)) == 3
    plain = without_crypto(section)
    assert (plain.proto, crypto_values(plain)) == ("RTP/AVP", [])
    assert [str(ln) for ln in plain.lines] == [
        "a=rtpmap:101 telephone-event/8000",
        "a=sendrecv",
    ]
    offer = make_offer([AES_CM_128_HMAC_SHA1_80])
    secure = with_crypto(plain, offer)
    assert secure.proto == "RTP/SAVP"
    assert [str(ln).split(" ")[0] for ln in secure.lines] == [
        "a=rtpmap:101",
        "a=crypto:1",
        "a=sendrecv",
    ]
    replaced = with_crypto(section, offer)  # takes the place of the old lines
    assert [str(ln)[:9] for ln in replaced.lines] == ["a=rtpmap:", "a=crypto:", "a=sendrec"]
    avpf = with_crypto(MediaDescription("audio", 1, "RTP/AVPF", ("0",)), offer)
    assert avpf.proto == "RTP/SAVPF"


def test_policy_offer_and_answer_through_sdp() -> None:
    negotiator = MediaNegotiator("198.51.100.1", 20000, rng=random.Random(3))
    section = negotiator.create_offer().media[0]
    same, lines = offer_section(section, SrtpPolicy.OFF)
    assert (same, lines) == (section, ())
    best_effort, _ = offer_section(section, SrtpPolicy.OFFER)  # plain profile, a=crypto
    assert (best_effort.proto, len(crypto_values(best_effort))) == ("RTP/AVP", 4)
    offered, ours = offer_section(section, SrtpPolicy.REQUIRE)
    assert offered.proto == "RTP/SAVP"
    assert len(crypto_values(offered)) == 4
    again, same_lines = offer_section(section, SrtpPolicy.REQUIRE, lines=ours)  # a re-offer
    assert (again, same_lines) == (offered, ours)
    body = SessionDescription(negotiator.create_offer().session_lines, (offered,))
    reparsed = SessionDescription.parse(bytes(body)).media[0]  # the whole body still parses
    assert crypto_values(reparsed) == crypto_values(offered)
    # The peer answers with our helpers too, then we accept its answer.
    answer, theirs = answer_section(reparsed, our_answer_section(body), SrtpPolicy.REQUIRE)
    assert theirs is not None
    assert answer.proto == "RTP/SAVP"
    agreed = accept_section(answer, ours, SrtpPolicy.REQUIRE)
    assert agreed is not None
    assert (agreed.local_key, agreed.remote_key) == (theirs.remote_key, theirs.local_key)


def test_answer_section_per_policy() -> None:
    offer = SessionDescription.parse(SAVP_OFFER)
    ours = our_answer_section(offer)
    answer, negotiated = answer_section(offer.media[0], ours, SrtpPolicy.OFFER)
    assert negotiated is not None
    assert negotiated.tag == 2
    assert answer.proto == "RTP/SAVP"
    assert [v.split(" inline:")[0] for v in crypto_values(answer)] == ["2 AES_CM_128_HMAC_SHA1_80"]
    with pytest.raises(NoCommonCrypto, match="SRTP is off"):
        answer_section(offer.media[0], ours, SrtpPolicy.OFF)
    plain = without_crypto(offer.media[0])
    assert answer_section(plain, ours, SrtpPolicy.OFFER) == (ours, None)
    with pytest.raises(NoCommonCrypto, match="SRTP is required but the offer is plain"):
        answer_section(plain, ours, SrtpPolicy.REQUIRE)
    only_mki = with_crypto(plain, [CryptoAttribute.parse(RFC_EXAMPLES[0])])
    with pytest.raises(NoCommonCrypto, match="MKI is not supported"):
        answer_section(only_mki, ours, SrtpPolicy.REQUIRE)


def test_best_effort_offer_is_answered_per_policy() -> None:
    """RTP/AVP with a=crypto (baresip's ``srtp``, Asterisk's optimistic SRTP): SRTP in the
    same profile under offer and require, plain under off or when no line is usable."""
    offer = SessionDescription.parse(SAVP_OFFER)
    best_effort = with_crypto(offer.media[0], crypto_values_parsed(offer), proto="RTP/AVP")
    ours = our_answer_section(offer)
    for policy in (SrtpPolicy.OFFER, SrtpPolicy.REQUIRE):
        answer, negotiated = answer_section(best_effort, ours, policy)
        assert negotiated is not None
        assert (answer.proto, len(crypto_values(answer))) == ("RTP/AVP", 1)
    assert answer_section(best_effort, ours, SrtpPolicy.OFF) == (ours, None)
    only_mki = with_crypto(best_effort, [CryptoAttribute.parse(RFC_EXAMPLES[0])], "RTP/AVP")
    assert answer_section(only_mki, ours, SrtpPolicy.OFFER) == (ours, None)
    with pytest.raises(NoCommonCrypto, match="MKI is not supported"):
        answer_section(only_mki, ours, SrtpPolicy.REQUIRE)


def crypto_values_parsed(offer: SessionDescription) -> list[CryptoAttribute]:
    return [CryptoAttribute.parse(v) for v in crypto_values(offer.media[0])]


def test_reoffer_keeps_our_key_and_the_running_crypto() -> None:
    offer = SessionDescription.parse(SAVP_OFFER)
    ours = our_answer_section(offer)
    _, first = answer_section(offer.media[0], ours, SrtpPolicy.REQUIRE)
    assert first is not None
    answer, again = answer_section(offer.media[0], ours, SrtpPolicy.REQUIRE, reuse=first)
    assert again == first  # same suite offered again: we answer with the key we send with
    # The peer's offer taken back as the answer to our re-offer (a glare): still `first`.
    ours_now = make_offer()
    assert accept_section(offer.media[0], ours_now, SrtpPolicy.REQUIRE, first) is first
    with pytest.raises(NoCommonCrypto):
        accept_section(offer.media[0], ours_now, SrtpPolicy.REQUIRE)


def test_accept_section_per_policy() -> None:
    offer = make_offer()
    plain_answer = without_crypto(SessionDescription.parse(SAVP_OFFER).media[0])
    assert accept_section(plain_answer, (), SrtpPolicy.OFF) is None
    assert accept_section(plain_answer, offer, SrtpPolicy.OFFER) is None
    with pytest.raises(NoCommonCrypto, match="answer is plain RTP"):
        accept_section(plain_answer, offer, SrtpPolicy.REQUIRE)
    no_lines = with_crypto(plain_answer, [])
    with pytest.raises(NoCommonCrypto, match="exactly one a=crypto line, got 0"):
        accept_section(no_lines, offer, SrtpPolicy.OFFER)


def test_policy_parse() -> None:
    assert SrtpPolicy.parse(" Require ") is SrtpPolicy.REQUIRE
    with pytest.raises(CryptoError, match="off, offer or require"):
        SrtpPolicy.parse("maybe")
