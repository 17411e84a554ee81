"""SDES key exchange (RFC 4568): the ``a=crypto`` attribute and its offer/answer, sans-I/O.

Theory of operation: :meth:`CryptoAttribute.parse` reads one ``a=crypto`` value into a typed,
validated record (suite, key||salt, lifetime, MKI, session parameters) and
:meth:`CryptoAttribute.wire` writes it back. The offerer sends :func:`make_offer` (one line per
suite we accept, each with a fresh key); the answerer runs :func:`select_answer`, which takes the
first offered line it can use (the offerer's preference, RFC 4568 section 7.1.2) and answers with
the same tag and suite and a key of its own; the offerer then runs :func:`accept_answer`. Both
ends get a :class:`NegotiatedCrypto`: the suite, our key (outbound) and theirs (inbound), which is
all :mod:`sessiond.media.srtp` needs.

Keys are secrets: no ``repr`` here shows them, and error messages never quote a key. Only
:meth:`CryptoAttribute.wire` (the SDP text itself) carries one; :func:`redact_keys` hides them in
any text (an SDP body about to be logged or recorded).

What we refuse, clearly, per line (the line is skipped; other offered lines may still do): an
unknown suite or key method, MKI and several keys per line (pylibsrtp cannot set an MKI), and
the session parameters that change the packet format (KDR other than 0, UNENCRYPTED_SRTP,
UNENCRYPTED_SRTCP, UNAUTHENTICATED_SRTP, FEC_KEY) and unknown ones, except optional extensions
marked with a leading ``-``. FEC_ORDER and WSH are accepted and ignored (we send no FEC;
libsrtp keeps its own 128-packet replay window).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sessiond.core.redact import redact_keys as redact_keys  # the media code's name for it
from sessiond.media.errors import CryptoError, NoCommonCrypto


@dataclass(frozen=True, slots=True)
class Suite:
    """An SRTP crypto suite as named in SDES, with its master key and salt lengths (bytes).

    RFC 4568 section 6.2 (AES_CM_128_HMAC_SHA1_80/_32: 128-bit key, 112-bit salt) and RFC 7714
    section 14.2 (AEAD_AES_128_GCM / AEAD_AES_256_GCM: 128/256-bit key, 96-bit salt). All four
    allow at most 2^48 SRTP packets per master key (RFC 3711 section 9.2, RFC 7714 section 15).
    """

    name: str
    key_length: int
    salt_length: int
    max_lifetime: int = 2**48

    @property
    def key_salt_length(self) -> int:
        """Length of the ``inline:`` value once base64-decoded: master key then master salt."""
        return self.key_length + self.salt_length

    def __str__(self) -> str:
        return self.name


AES_CM_128_HMAC_SHA1_80 = Suite("AES_CM_128_HMAC_SHA1_80", 16, 14)
AES_CM_128_HMAC_SHA1_32 = Suite("AES_CM_128_HMAC_SHA1_32", 16, 14)
AEAD_AES_128_GCM = Suite("AEAD_AES_128_GCM", 16, 12)
AEAD_AES_256_GCM = Suite("AEAD_AES_256_GCM", 32, 12)

#: Every suite we can run (through libsrtp), by SDES name.
SUITES: dict[str, Suite] = {
    s.name: s
    for s in (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM, AEAD_AES_256_GCM)
}
#: What we offer, most preferred first: the 80-bit tag suite every SDES peer has comes first.
DEFAULT_SUITES: tuple[Suite, ...] = (
    AES_CM_128_HMAC_SHA1_80,
    AES_CM_128_HMAC_SHA1_32,
    AEAD_AES_256_GCM,
    AEAD_AES_128_GCM,
)

# RFC 4568 section 9.1: tag = 1*9DIGIT; crypto-suite = 1*(ALPHA / DIGIT / "_").
_TAG = re.compile(r"[0-9]{1,9}")
_SUITE_NAME = re.compile(r"[A-Za-z0-9_]+")
# RFC 3548 section 3 alphabet; padding may be omitted by some peers, we accept both.
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# RFC 4568 section 6.3: session parameters that are flags (no value).
_FLAGS = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP")


@dataclass(frozen=True, slots=True, repr=False)
class KeyParams:
    """One SRTP key-param: ``inline:<key||salt>[|lifetime][|MKI:length]`` (section 6.1).

    ``lifetime`` is in packets (None: the suite maximum); ``mki`` is ``(value, length in
    bytes)`` or None.
    """

    key_salt: bytes
    lifetime: int | None = None
    mki: tuple[int, int] | None = None

    def __repr__(self) -> str:
        hidden = f"<{len(self.key_salt)} bytes hidden>"
        return f"KeyParams(key_salt={hidden}, lifetime={self.lifetime}, mki={self.mki})"

    @classmethod
    def parse(cls, text: str, suite: Suite) -> KeyParams:
        """Parse one ``key-param`` for ``suite``; the key length is checked against the suite.

        ABNF (RFC 4568 sections 6.1 and 9.2): ``key-param = key-method ":" key-info``;
        ``key-info = key-salt ["|" lifetime] ["|" mki]``; ``lifetime = ["2^"] 1*(DIGIT)``;
        ``mki = mki-value ":" mki-length``; ``mki-length = 1*3DIGIT`` in 1..128.
        """
        method, sep, info = text.partition(":")
        if not sep or method.lower() != "inline":
            # without the colon, ``method`` may be the key itself: never quote it
            shown = repr(method) if sep and method.isalpha() and len(method) <= 16 else "none"
            raise CryptoError(f"a=crypto key method must be 'inline:', got {shown}")
        key_text, *fields = info.split("|")
        key_salt = _decode_key(key_text, suite)
        if len(fields) > 2:
            raise CryptoError("a=crypto key has more than a lifetime and an MKI after it")
        lifetime: int | None = None
        mki: tuple[int, int] | None = None
        for index, value in enumerate(fields):
            if ":" in value:
                if index != len(fields) - 1:
                    raise CryptoError("a=crypto MKI must come last in the key parameters")
                mki = _parse_mki(value)
            elif lifetime is None and mki is None:
                lifetime = _parse_lifetime(value, suite)
            else:
                raise CryptoError(f"a=crypto key has two lifetimes: {value[:24]!r}")
        return cls(key_salt, lifetime, mki)

    def wire(self) -> str:
        """The ``inline:...`` text, key included: for the SDP body only."""
        out = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            exponent = self.lifetime.bit_length() - 1
            power = self.lifetime == 1 << exponent
            out += f"|2^{exponent}" if power and exponent > 0 else f"|{self.lifetime}"
        if self.mki is not None:
            out += f"|{self.mki[0]}:{self.mki[1]}"
        return out


def _decode_key(text: str, suite: Suite) -> bytes:
    if not _BASE64.fullmatch(text):
        raise CryptoError(f"a=crypto {suite} key is not base64 (RFC 4568 section 6.1)")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise CryptoError(f"a=crypto {suite} key is not valid base64") from None
    if len(key) != suite.key_salt_length:
        raise CryptoError(
            f"a=crypto {suite} key||salt must be {suite.key_salt_length} bytes, got {len(key)}"
        )
    return key


def _parse_lifetime(text: str, suite: Suite) -> int:
    power = text.startswith("2^")
    digits = text[2:] if power else text
    if not (0 < len(digits) <= 20 and digits.isascii() and digits.isdigit()):
        raise CryptoError(f"a=crypto lifetime must be N or 2^N, got {text[:24]!r}")
    lifetime = 2 ** min(int(digits), 64) if power else int(digits)
    if not 0 < lifetime <= suite.max_lifetime:
        raise CryptoError(f"a=crypto lifetime {text[:24]!r} is outside 1..2^48 for {suite}")
    return lifetime


def _parse_mki(text: str) -> tuple[int, int]:
    value, _, length = text.partition(":")
    numeric = all(p.isascii() and p.isdigit() for p in (value, length))
    if not numeric or len(length) > 3 or not 1 <= int(length) <= 128 or len(value) > 40:
        raise CryptoError(f"a=crypto MKI must be VALUE:LENGTH, LENGTH 1..128: {text[:24]!r}")
    if int(value) >= 1 << (8 * int(length)):
        raise CryptoError(f"a=crypto MKI value does not fit in its length: {text[:24]!r}")
    return int(value), int(length)


@dataclass(frozen=True, slots=True, repr=False)
class CryptoAttribute:
    """``a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]`` (RFC 4568 section 4).

    ``value`` of the SDP attribute, i.e. without the ``crypto:`` prefix.
    """

    tag: int
    suite: Suite
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    @property
    def key(self) -> bytes:
        """The (first, usually only) master key || master salt."""
        return self.keys[0].key_salt

    def __repr__(self) -> str:
        return f"CryptoAttribute({self.redacted()!r})"

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse an ``a=crypto`` attribute value; raise :class:`CryptoError` on any problem.

        ABNF (section 9.1): ``tag 1*WSP crypto-suite 1*WSP key-params *(1*WSP session-param)``;
        ``key-params = key-param *(";" key-param)``. RFC 4568 section 6.1: with several keys,
        each needs an MKI, of one length.
        """
        parts = value.split()
        if len(parts) < 3:
            raise CryptoError("a=crypto needs a tag, a crypto suite and key parameters")
        tag, name, key_params, *params = parts
        if not _TAG.fullmatch(tag):
            raise CryptoError(f"a=crypto tag must be 1 to 9 digits, got {tag[:16]!r}")
        if not _SUITE_NAME.fullmatch(name):
            raise CryptoError(f"a=crypto suite name is malformed: {name[:40]!r}")
        suite = SUITES.get(name)
        if suite is None:
            raise CryptoError(f"a=crypto suite {name[:40]} is not supported")
        keys = tuple(KeyParams.parse(text, suite) for text in key_params.split(";"))
        mki_lengths = {k.mki[1] if k.mki else None for k in keys}
        if len(keys) > 1 and (None in mki_lengths or len(mki_lengths) != 1):
            raise CryptoError("a=crypto with several keys needs an MKI of one length on each")
        for param in params:
            _check_session_param(param)
        return cls(int(tag), suite, keys, tuple(params))

    def wire(self) -> str:
        """The attribute value as it goes in SDP, key included: for the SDP body only."""
        keys = ";".join(k.wire() for k in self.keys)
        return " ".join((str(self.tag), self.suite.name, keys, *self.session_params))

    def redacted(self) -> str:
        """The attribute value with every key replaced by ``<hidden>``: safe to log."""
        keys = ";".join(_redact(k.wire()) for k in self.keys)
        return " ".join((str(self.tag), self.suite.name, keys, *self.session_params))

    def unusable(self) -> str | None:
        """Why we cannot run this line with libsrtp, or None when we can."""
        if any(k.mki is not None for k in self.keys):
            return "MKI is not supported"
        for param in self.session_params:
            name, _, value = param.partition("=")
            known = name in ("WSH", "FEC_ORDER") or (name == "KDR" and int(value) == 0)
            if not known and not name.startswith("-"):
                return f"session parameter {name[:24]} is not supported"
        return None


def _redact(key_param: str) -> str:
    method, _, info = key_param.partition(":")
    _, sep, rest = info.partition("|")
    return f"{method}:<hidden>{sep}{rest}"


def _check_session_param(param: str) -> None:
    """Section 6.3: KDR=0..24, WSH=>=64, FEC_ORDER=FEC_SRTP|SRTP_FEC, flags; extensions are
    visible characters. Known ones with a bad value are malformed."""
    name, sep, value = param.partition("=")
    number = value.isascii() and value.isdigit() and len(value) <= 6
    bad = (
        (name == "KDR" and not (number and int(value) <= 24))
        or (name == "WSH" and not (number and int(value) >= 64))
        or (name == "FEC_ORDER" and value not in ("FEC_SRTP", "SRTP_FEC"))
        or (name in _FLAGS and sep != "")
        or not (param.isascii() and param.isprintable())
    )
    if bad:
        raise CryptoError(f"a=crypto session parameter is malformed: {param[:40]!r}")


def _parse_or_reason(value: str) -> CryptoAttribute | str:
    """A usable attribute, or the reason (a string) it cannot be used."""
    try:
        attr = CryptoAttribute.parse(value)
    except CryptoError as exc:
        return str(exc)
    reason = attr.unusable()
    return attr if reason is None else f"a=crypto tag {attr.tag}: {reason}"


@dataclass(frozen=True, slots=True, repr=False)
class NegotiatedCrypto:
    """The outcome of SDES for one media stream: the suite, our key, the peer's key.

    ``local_key`` protects what we send; ``remote_key`` unprotects what we receive (RFC 4568
    section 6.1: each side's a=crypto carries the key *it* sends with).
    """

    suite: Suite
    tag: int
    local_key: bytes
    remote_key: bytes

    def __repr__(self) -> str:
        return f"NegotiatedCrypto(suite={self.suite}, tag={self.tag}, keys=<hidden>)"


KeySource = Callable[[int], bytes]


def generate_key(suite: Suite, source: KeySource = secrets.token_bytes) -> bytes:
    """A fresh master key || salt for ``suite`` (RFC 4568 section 8.2: from a strong RNG)."""
    return source(suite.key_salt_length)


def make_offer(
    suites: Sequence[Suite] = DEFAULT_SUITES, source: KeySource = secrets.token_bytes
) -> tuple[CryptoAttribute, ...]:
    """Our offer: one line per suite, tags 1..n in preference order, each with its own key."""
    if not suites:
        raise CryptoError("an SRTP offer needs at least one crypto suite")
    return tuple(
        CryptoAttribute(tag, suite, (KeyParams(generate_key(suite, source)),))
        for tag, suite in enumerate(suites, start=1)
    )


def select_answer(
    offered: Iterable[str],
    suites: Sequence[Suite] = tuple(SUITES.values()),
    source: KeySource = secrets.token_bytes,
    reuse: NegotiatedCrypto | None = None,
) -> tuple[CryptoAttribute, NegotiatedCrypto]:
    """Answer an offer's ``a=crypto`` values: the first usable one wins (section 7.1.2).

    Our line has the same tag and suite and a new key, or, when the stream already runs
    ``reuse`` with that suite (a re-offer), the key we send with already: our SRTP sender
    then goes on unchanged. Malformed or unsupported lines are skipped; when none is left,
    :class:`NoCommonCrypto` lists why each was refused.
    """
    reasons: list[str] = []
    for value in offered:
        found = _parse_or_reason(value)
        if isinstance(found, str):
            reasons.append(found)
        elif found.suite not in suites:
            reasons.append(f"a=crypto tag {found.tag}: suite {found.suite} is not enabled")
        else:
            same = reuse is not None and reuse.suite == found.suite
            key = reuse.local_key if same and reuse else generate_key(found.suite, source)
            ours = CryptoAttribute(found.tag, found.suite, (KeyParams(key),))
            return ours, NegotiatedCrypto(found.suite, found.tag, ours.key, found.key)
    raise NoCommonCrypto("no acceptable a=crypto line: " + ("; ".join(reasons) or "none offered"))


def accept_answer(offer: Sequence[CryptoAttribute], answer: Sequence[str]) -> NegotiatedCrypto:
    """Match the answer's single ``a=crypto`` to the offered line of the same tag and suite.

    RFC 4568 section 7.1.3: the answer carries exactly one crypto attribute, whose tag and
    suite are one of ours; anything else means SRTP was not agreed.
    """
    if len(answer) != 1:
        raise NoCommonCrypto(f"an SDES answer needs exactly one a=crypto line, got {len(answer)}")
    found = _parse_or_reason(answer[0])
    if isinstance(found, str):
        raise NoCommonCrypto(found)
    ours = next((o for o in offer if o.tag == found.tag), None)
    if ours is None or ours.suite != found.suite:
        raise NoCommonCrypto(
            f"answered a=crypto tag {found.tag} {found.suite} matches no offered line"
        )
    return NegotiatedCrypto(found.suite, found.tag, ours.key, found.key)
