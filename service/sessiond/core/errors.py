"""The one error hierarchy of sessiond.

Every error raised across module boundaries derives from :class:`SessiondError`; a remote
protocol error becomes a SIP response (or a CLI message) at exactly one boundary.
"""

from __future__ import annotations


class SessiondError(Exception):
    """Root of every error sessiond raises on purpose."""


class TableError(SessiondError):
    """A state table is invalid. ``problems`` holds one ``file:line: message`` string each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class EngineError(SessiondError):
    """The engine cannot decide (e.g. a follow-up event loop that does not settle)."""


class StoreError(SessiondError):
    """The Redis store returned something the protocol does not allow."""


class SessionNotFound(StoreError):
    """No session hash exists for the given session id."""


class ConflictRetriesExhausted(StoreError):
    """The compare-and-set lost the race too many times in a row."""
