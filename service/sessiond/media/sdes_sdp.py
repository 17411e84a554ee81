"""SDES in SDP media sections: the RTP/SAVP profile, ``a=crypto`` lines and the SRTP policy.

Theory of operation: SRTP with SDES is a media section whose profile is ``RTP/SAVP`` (or
``RTP/SAVPF``, RFC 5124) and which carries ``a=crypto`` lines (RFC 4568 section 5). These helpers
read and write exactly that on a :class:`~sessiond.media.sdp.MediaDescription`, leaving every
other line where it was, and apply a per-listener or per-route :class:`SrtpPolicy`:

- ``off``: plain RTP only; an RTP/SAVP offer cannot be accepted.
- ``offer``: we offer SRTP; as answerer we take SRTP when offered and plain RTP otherwise.
- ``require``: SRTP or nothing: a plain offer, or one with no usable ``a=crypto``, is refused.

Refusals raise :class:`~sessiond.media.errors.NoCommonCrypto` (SIP 488 when answering).
Nothing here changes :mod:`sessiond.media.offer_answer`; the caller builds the section with it
and then passes it through :func:`offer_section` / :func:`answer_section`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from enum import Enum

from sessiond.media.errors import CryptoError, NoCommonCrypto
from sessiond.media.sdes import (
    DEFAULT_SUITES,
    SUITES,
    CryptoAttribute,
    KeySource,
    NegotiatedCrypto,
    Suite,
    accept_answer,
    make_offer,
    select_answer,
)
from sessiond.media.sdp import Line, MediaDescription, attribute_line
from sessiond.media.sdp_fields import DIRECTION_NAMES

# RFC 3711 section 12 (SAVP) and RFC 5124 section 4 (SAVPF): the secure form of each profile.
_SECURE = {"RTP/AVP": "RTP/SAVP", "RTP/AVPF": "RTP/SAVPF"}
_PLAIN = {secure: plain for plain, secure in _SECURE.items()}


class SrtpPolicy(Enum):
    """Whether a listener or route uses SRTP: ``off``, ``offer`` or ``require``."""

    OFF = "off"
    OFFER = "offer"
    REQUIRE = "require"

    @classmethod
    def parse(cls, text: str) -> SrtpPolicy:
        """Read a policy name from configuration."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise CryptoError(f"SRTP policy must be off, offer or require, got {text!r}") from None


def is_secure(section: MediaDescription) -> bool:
    """True for an SRTP profile (``RTP/SAVP``, ``RTP/SAVPF``)."""
    return section.proto.upper() in _PLAIN


def crypto_values(section: MediaDescription) -> list[str]:
    """The ``a=crypto`` values of a section, in order (unparsed: malformed ones included)."""
    return [value for value in section.attributes("crypto") if value is not None]


def with_crypto(
    section: MediaDescription, attributes: Sequence[CryptoAttribute], proto: str | None = None
) -> MediaDescription:
    """The section with ``proto`` (default: the secure form of its profile) and exactly these
    ``a=crypto`` lines.

    New lines take the place of the first old one; without any, they go before the direction
    attribute (or last). Every other line keeps its position.
    """
    new = [attribute_line("crypto", a.wire()) for a in attributes]
    lines = _replace_crypto(section.lines, new)
    proto = proto or _SECURE.get(section.proto.upper(), section.proto)
    return MediaDescription(
        section.media, section.port, proto, section.formats, lines, section.port_count
    )


def without_crypto(section: MediaDescription) -> MediaDescription:
    """The section as plain RTP: profile ``RTP/AVP(F)`` and no ``a=crypto`` lines."""
    lines = _replace_crypto(section.lines, [])
    proto = _PLAIN.get(section.proto.upper(), section.proto)
    return MediaDescription(
        section.media, section.port, proto, section.formats, lines, section.port_count
    )


def _replace_crypto(lines: Sequence[Line], new: list[Line]) -> tuple[Line, ...]:
    kept = [ln for ln in lines if not _is_crypto(ln)]
    first = next((i for i, ln in enumerate(lines) if _is_crypto(ln)), None)
    if first is not None:
        at = sum(1 for ln in lines[:first] if not _is_crypto(ln))
    else:
        at = next((i for i, ln in enumerate(kept) if _is_direction(ln)), len(kept))
    return (*kept[:at], *new, *kept[at:])


def _is_crypto(line: Line) -> bool:
    attr = line.attribute
    return attr is not None and attr[0] == "crypto"


def _is_direction(line: Line) -> bool:
    return line.type == "a" and line.value in DIRECTION_NAMES


def offer_section(
    section: MediaDescription,
    policy: SrtpPolicy,
    suites: Sequence[Suite] = DEFAULT_SUITES,
    source: KeySource = secrets.token_bytes,
) -> tuple[MediaDescription, tuple[CryptoAttribute, ...]]:
    """Our offer's audio section under ``policy``, and the crypto lines to keep for the answer.

    ``off`` returns the section unchanged and no lines.
    """
    if policy is SrtpPolicy.OFF:
        return section, ()
    offer = make_offer(suites, source)
    return with_crypto(section, offer), offer


def answer_section(
    offered: MediaDescription,
    answer: MediaDescription,
    policy: SrtpPolicy,
    suites: Sequence[Suite] = tuple(SUITES.values()),
    source: KeySource = secrets.token_bytes,
) -> tuple[MediaDescription, NegotiatedCrypto | None]:
    """Our answer section (built by offer/answer) made secure or plain to match the offer.

    Returns the crypto agreed, or None for plain RTP. A plain offer carrying ``a=crypto``
    ("best effort" SRTP, not in any RFC) is answered plain.
    """
    if not is_secure(offered):
        if policy is SrtpPolicy.REQUIRE:
            raise NoCommonCrypto("SRTP is required but the offer is plain RTP (RTP/AVP)")
        return without_crypto(answer), None
    if policy is SrtpPolicy.OFF:
        raise NoCommonCrypto(f"the offer is {offered.proto} (SRTP) and SRTP is off here")
    ours, negotiated = select_answer(crypto_values(offered), suites, source)
    # RFC 3264 section 6: the answer uses the offer's profile.
    section = with_crypto(answer, [ours], proto=offered.proto)
    return section, negotiated


def accept_section(
    answer: MediaDescription, offer: Sequence[CryptoAttribute], policy: SrtpPolicy
) -> NegotiatedCrypto | None:
    """What the peer's answer section agreed to our offer, or None for plain RTP.

    A plain answer to our SRTP offer is accepted as plain RTP under ``offer`` (some peers do
    this though RFC 3264 says the profile must match) and refused under ``require``.
    """
    values = crypto_values(answer)
    if not offer:
        return None
    if not is_secure(answer) and not values:
        if policy is SrtpPolicy.REQUIRE:
            raise NoCommonCrypto("SRTP is required but the answer is plain RTP")
        return None
    return accept_answer(offer, values)
