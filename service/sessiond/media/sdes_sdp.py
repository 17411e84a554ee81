"""SDES in SDP media sections: the RTP/SAVP profile, ``a=crypto`` lines and the SRTP policy.

Theory of operation: SRTP with SDES is a media section whose profile is ``RTP/SAVP`` (or
``RTP/SAVPF``, RFC 5124) and which carries ``a=crypto`` lines (RFC 4568 section 5). These helpers
read and write exactly that on a :class:`~sessiond.media.sdp.MediaDescription`, leaving every
other line where it was, and apply a per-listener or per-route :class:`SrtpPolicy`:

- ``off``: plain RTP only; an RTP/SAVP offer cannot be accepted (its ``a=crypto`` lines in a
  plain RTP/AVP offer are ignored).
- ``offer``: we offer SRTP the way phones with optional SRTP do ("best effort": ``RTP/AVP``
  with ``a=crypto``, so a peer without SRTP answers plain instead of refusing); as answerer
  we take SRTP when offered (``RTP/SAVP``, or ``RTP/AVP`` with a usable ``a=crypto``) and
  plain RTP otherwise.
- ``require``: SRTP or nothing: we offer ``RTP/SAVP``; a plain offer or answer, or one with
  no usable ``a=crypto``, is refused.

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


#: The help text of the ``--srtp`` options.
SRTP_HELP = (
    "SRTP (SDES) of legs whose route names no policy: off (plain RTP; an RTP/SAVP offer "
    "gets 488), offer (offer RTP/AVP with a=crypto, take SRTP when offered), require "
    "(offer RTP/SAVP; a plain offer gets 488, a plain answer ends the call)"
)


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
    *,
    lines: Sequence[CryptoAttribute] = (),
) -> tuple[MediaDescription, tuple[CryptoAttribute, ...]]:
    """Our offer's audio section under ``policy``, and the crypto lines to keep for the answer.

    ``require`` offers ``RTP/SAVP`` (``RTP/SAVPF``); ``offer`` keeps the plain profile and
    adds the ``a=crypto`` lines ("best effort" SRTP, as phones with optional SRTP offer it),
    so that a peer without SRTP answers plain RTP instead of refusing the call; ``off``
    returns the section unchanged and no lines. ``lines`` (a re-offer) are offered again
    instead of new keys.
    """
    if policy is SrtpPolicy.OFF:
        return section, ()
    offer = tuple(lines) or make_offer(suites, source)
    proto = None if policy is SrtpPolicy.REQUIRE else section.proto
    return with_crypto(section, offer, proto=proto), offer


def answer_section(
    offered: MediaDescription,
    answer: MediaDescription,
    policy: SrtpPolicy,
    suites: Sequence[Suite] = tuple(SUITES.values()),
    source: KeySource = secrets.token_bytes,
    reuse: NegotiatedCrypto | None = None,
) -> tuple[MediaDescription, NegotiatedCrypto | None]:
    """Our answer section (built by offer/answer) made secure or plain to match the offer.

    Returns the crypto agreed, or None for plain RTP. A plain (``RTP/AVP``) offer carrying
    ``a=crypto`` ("best effort" SRTP) is answered with ``a=crypto`` in the same profile
    under ``offer`` and ``require``, and plain under ``off`` (or under ``offer`` when no
    line is usable). ``reuse`` is the crypto the stream runs now (a re-offer): its key is
    answered again when the suite stays.
    """
    if policy is SrtpPolicy.OFF:
        if is_secure(offered):
            raise NoCommonCrypto(f"the offer is {offered.proto} (SRTP) and SRTP is off here")
        return _plain(answer), None
    values = crypto_values(offered)
    if not is_secure(offered) and not values:
        if policy is SrtpPolicy.REQUIRE:
            raise NoCommonCrypto("SRTP is required but the offer is plain RTP (RTP/AVP)")
        return _plain(answer), None
    try:
        ours, negotiated = select_answer(values, suites, source, reuse)
    except NoCommonCrypto:
        if is_secure(offered) or policy is SrtpPolicy.REQUIRE:
            raise
        return without_crypto(answer), None
    # RFC 3264 section 6: the answer uses the offer's profile.
    section = with_crypto(answer, [ours], proto=offered.proto)
    return section, negotiated


def _plain(section: MediaDescription) -> MediaDescription:
    """``section`` as plain RTP (itself when it is already: the common case, no copy)."""
    if is_secure(section) or any(_is_crypto(line) for line in section.lines):
        return without_crypto(section)
    return section


def accept_section(
    answer: MediaDescription,
    offer: Sequence[CryptoAttribute],
    policy: SrtpPolicy,
    current: NegotiatedCrypto | None = None,
) -> NegotiatedCrypto | None:
    """What the peer's answer section agreed to our offer, or None for plain RTP.

    A plain answer (no ``a=crypto``) to our SRTP offer is accepted as plain RTP under
    ``offer`` (our offer was plain RTP with ``a=crypto``, or a peer that answers an SAVP
    offer plain, though RFC 3264 says the profile must match) and refused under
    ``require``. An SDP that still carries the line the stream runs now (``current``: its
    tag, suite and the peer's key) keeps it: the peer's earlier SDP taken back as the
    answer to a re-offer a glare withdrew.
    """
    values = crypto_values(answer)
    if not offer:
        return None
    if not values and not is_secure(answer):
        if policy is SrtpPolicy.REQUIRE:
            raise NoCommonCrypto("SRTP is required but the answer is plain RTP")
        return None
    if current is not None and any(_runs(value, current) for value in values):
        return current
    return accept_answer(offer, values)


def _runs(value: str, current: NegotiatedCrypto) -> bool:
    """True when ``value`` is the peer's line of the crypto the stream runs now."""
    try:
        attr = CryptoAttribute.parse(value)
    except CryptoError:
        return False
    return (attr.tag, attr.suite, attr.key) == (current.tag, current.suite, current.remote_key)
