"""Errors of the SIP protocol core.

A :class:`SipParseError` is a *remote* protocol error: it carries the SIP status code and
reason phrase with which an edge answers the offending request statelessly (RFC 3261 8.2,
16.3, 21.4), e.g. ``400 Bad Request`` with reason ``"Missing Call-ID"``.
"""

from __future__ import annotations

from sessiond.core.errors import SessiondError

#: Default reason phrases (RFC 3261 21) for the statuses this package raises.
DEFAULT_REASONS: dict[int, str] = {
    400: "Bad Request",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    482: "Loop Detected",
    483: "Too Many Hops",
    505: "Version Not Supported",
    513: "Message Too Large",
    503: "Service Unavailable",
}


class SipError(SessiondError):
    """Root of every error of the SIP core (parsing, transactions, dialogs, auth)."""


class SipParseError(SipError):
    """A message is malformed or unacceptable; answer it with ``status`` and ``reason``.

    ``problem`` names what is wrong (``"Missing Call-ID"``); ``reason`` is the full reason
    phrase to send (``"Bad Request - Missing Call-ID"``). ``headers`` lists extra header
    fields the response must carry (``Unsupported`` for 420, RFC 3261 8.2.2.3).
    """

    def __init__(
        self,
        status: int,
        problem: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.problem = problem
        self.headers = headers
        base = DEFAULT_REASONS.get(status, "Bad Request")
        self.reason = f"{base} - {problem}" if problem else base
        super().__init__(f"{status} {self.reason}")


class TransactionError(SipError):
    """The transaction layer was used against its state machine (a TU bug, not the peer's)."""


class AuthError(SipError):
    """A digest challenge or credentials cannot be processed."""
