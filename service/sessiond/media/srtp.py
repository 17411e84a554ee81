"""SRTP and SRTCP (RFC 3711, RFC 7714) for one stream, through libsrtp (``pylibsrtp``).

Theory of operation: an :class:`SrtpSession` is built from what SDES agreed
(:class:`~sessiond.media.sdes.NegotiatedCrypto`): one libsrtp session keyed with *our* master
key for what we send (any outbound SSRC), one keyed with the *peer's* for what we receive (any
inbound SSRC; libsrtp adds a stream per new SSRC). Bytes in, bytes out: no socket here. All
cryptography, key derivation and the replay window (RFC 3711 section 3.3.2, default 128
packets) are libsrtp's. Every refusal (authentication failure, replay, malformed packet)
raises :class:`~sessiond.media.errors.SrtpError` with a ``reason`` the RTP path counts before
dropping the packet.

Note: the sender's replay check is on too (``allow_repeat_tx`` off), so protecting the same
sequence number twice fails instead of reusing a keystream.
"""

from __future__ import annotations

from collections.abc import Callable

import pylibsrtp

from sessiond.media.errors import CryptoError, SrtpError
from sessiond.media.sdes import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    NegotiatedCrypto,
    Suite,
)

#: libsrtp profile of each SDES suite (RFC 5764 section 4.1.2 numbering, as libsrtp uses).
PROFILES: dict[Suite, int] = {
    AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    AEAD_AES_256_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
DEFAULT_WINDOW = 128


def _reason(message: str) -> str:
    if message.startswith("authentication failure"):
        return SrtpError.AUTH
    if message.startswith("replay check failed") or "index is too old" in message:
        return SrtpError.REPLAY
    return SrtpError.MALFORMED


class SrtpSession:
    """Protect what we send and unprotect what we receive, for one negotiated stream."""

    __slots__ = ("_inbound", "_keys", "_outbound", "_profile", "_window", "suite")

    def __init__(
        self, suite: Suite, local_key: bytes, remote_key: bytes, *, window: int = DEFAULT_WINDOW
    ) -> None:
        profile = PROFILES.get(suite)
        if profile is None:
            raise CryptoError(f"SRTP suite {suite} is not supported")
        for key in (local_key, remote_key):
            if len(key) != suite.key_salt_length:
                raise CryptoError(f"{suite} needs a {suite.key_salt_length}-byte key||salt")
        if not 64 <= window < 2**15:  # libsrtp's bounds for the replay window
            raise CryptoError(f"SRTP replay window must be 64..32767 packets, got {window}")
        self.suite = suite
        self._keys = (local_key, remote_key)
        self._profile, self._window = profile, window
        self._outbound = self._session(
            profile, local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, window
        )
        self._inbound = self._session(
            profile, remote_key, pylibsrtp.Policy.SSRC_ANY_INBOUND, window
        )

    @classmethod
    def from_negotiated(
        cls, crypto: NegotiatedCrypto, *, window: int = DEFAULT_WINDOW
    ) -> SrtpSession:
        """The session SDES agreed on: our key outbound, the peer's inbound."""
        return cls(crypto.suite, crypto.local_key, crypto.remote_key, window=window)

    def runs(self, crypto: NegotiatedCrypto) -> bool:
        """True when this session already runs exactly what ``crypto`` agreed."""
        return (crypto.suite, crypto.local_key, crypto.remote_key) == (self.suite, *self._keys)

    def rekeyed(self, crypto: NegotiatedCrypto) -> SrtpSession:
        """The session for a new offer/answer outcome: this one when nothing changed; this
        one with a new inbound key when only the peer's key changed (what we send goes on
        with its rollover counter and replay list); else a new session."""
        if self.runs(crypto):
            return self
        if crypto.suite != self.suite or crypto.local_key != self._keys[0]:
            return SrtpSession.from_negotiated(crypto, window=self._window)
        if len(crypto.remote_key) != crypto.suite.key_salt_length:
            raise CryptoError(f"{crypto.suite} needs a {crypto.suite.key_salt_length}-byte key")
        self._inbound = self._session(
            self._profile, crypto.remote_key, pylibsrtp.Policy.SSRC_ANY_INBOUND, self._window
        )
        self._keys = (self._keys[0], crypto.remote_key)
        return self

    @staticmethod
    def _session(profile: int, key: bytes, ssrc_type: int, window: int) -> pylibsrtp.Session:
        policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
        policy.window_size = window
        try:
            return pylibsrtp.Session(policy)
        except pylibsrtp.Error as exc:  # pragma: no cover - profiles and keys checked above
            raise CryptoError(f"libsrtp refused the SRTP policy: {exc}") from None

    def __repr__(self) -> str:
        return f"SrtpSession(suite={self.suite}, keys=<hidden>)"

    def protect(self, packet: bytes) -> bytes:
        """RTP -> SRTP (RFC 3711 section 3.3)."""
        return _run(self._outbound.protect, packet, "protect")

    def unprotect(self, packet: bytes) -> bytes:
        """SRTP -> RTP, after authentication and the replay check (section 3.3.2)."""
        return _run(self._inbound.unprotect, packet, "unprotect")

    def protect_rtcp(self, packet: bytes) -> bytes:
        """RTCP -> SRTCP (RFC 3711 section 3.4; always an 80-bit tag for the AES-CM suites)."""
        return _run(self._outbound.protect_rtcp, packet, "protect_rtcp")

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """SRTCP -> RTCP, after authentication and the SRTCP index replay check."""
        return _run(self._inbound.unprotect_rtcp, packet, "unprotect_rtcp")


def _run(operation: Callable[[bytes], bytes], packet: bytes, name: str) -> bytes:
    try:
        result = operation(packet)
    except pylibsrtp.Error as exc:
        raise SrtpError(_reason(str(exc)), f"{name} failed: {exc}") from None
    except (ValueError, TypeError) as exc:  # too long for libsrtp's buffer, or not bytes
        raise SrtpError(SrtpError.MALFORMED, f"{name} failed: {exc}") from None
    return bytes(result)
