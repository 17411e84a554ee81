"""When to refuse new calls because the system behind the edge cannot keep up. Sans-I/O.

Two signals, either enough:

* the workers fall behind: the entries of the event streams not yet delivered to the
  ``workers`` group (XINFO GROUPS ``lag``, summed over partitions) exceed ``max_lag``;
* Redis is slow or away: the oldest event this edge has not managed to publish has waited
  longer than ``max_delay`` seconds.

While overloaded, the edge answers new INVITEs 503 with Retry-After (statelessly, before they
reach Redis); requests inside dialogs, and responses, still flow, so calls in progress go on.
"""

from __future__ import annotations


class OverloadGuard:
    def __init__(self, max_lag: int = 5000, max_delay: float = 1.0) -> None:
        self.max_lag = max_lag
        self.max_delay = max_delay
        self.lag = 0
        self._unpublished_since: float | None = None

    def observe_lag(self, lag: int) -> None:
        self.lag = lag

    def queued(self, now: float) -> None:
        """An event was queued for publishing (keeps the oldest such time)."""
        if self._unpublished_since is None:
            self._unpublished_since = now

    def published(self, now: float, pending: bool) -> None:
        """A publish round trip finished; ``pending``: more events were queued meanwhile."""
        self._unpublished_since = now if pending else None

    def reason(self, now: float) -> str | None:
        """Why new calls should be refused now, or None."""
        if self.lag > self.max_lag:
            return f"{self.lag} events waiting for workers"
        since = self._unpublished_since
        if since is not None and now - since > self.max_delay:
            return f"events unpublished for {now - since:.1f} s"
        return None
