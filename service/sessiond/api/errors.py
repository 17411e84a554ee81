"""Errors of the call-control API; all derive from :class:`sessiond.core.errors.SessiondError`."""

from __future__ import annotations

from sessiond.core.errors import SessiondError, SessionNotFound

__all__ = [
    "CallEnded",
    "CallError",
    "CallFailed",
    "CallRejected",
    "CallTimeout",
    "SessionNotFound",
    "SessiondError",
]


class CallError(SessiondError):
    """Root of the errors about one call."""


class CallFailed(CallError):
    """The call could not be set up (no media, no response, a local failure...)."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"call failed: {code} {reason}".rstrip())


class CallRejected(CallFailed):
    """The far end answered our INVITE with a final error response (3xx-6xx), e.g. 486."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.args = (f"call rejected: {code} {reason}".rstrip(),)


class CallTimeout(CallError):
    """The call did not reach the expected state in time (no answer, no response)."""


class CallEnded(CallError):
    """The call has ended: there is no more audio to send or receive."""
