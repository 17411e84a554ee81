"""Server transactions handed to the workers (the TU) and not answered yet. Sans-I/O.

The transaction layer keeps a server transaction until the TU sends its final response. An
event the workers never act on (no worker runs, the event was lost, a table that never
answers) would keep its transaction, and the parsed request in it, for the edge's whole
life: a flood of requests nobody answers grew the edge without bound (issue 18). So a
request the workers have not answered at all (not even with a provisional response) in time
is answered by the edge with a 503, and its transaction ends as any answered one does:

- a non-INVITE request after 64*T1, when its client has given up (RFC 3261 17.1.2.2);
- an INVITE after 6*64*T1 (192 s), longer than a proxy's Timer C (more than 3 minutes,
  16.6 step 11) and than our own Timer B on a leg the workers placed for it, so the 408
  a table sends when that leg times out comes first.
"""

from __future__ import annotations

from collections import OrderedDict

INVITE_FACTOR = 6


class Unanswered:
    """Keys of server transactions waiting for the TU, oldest first: one timeout per kind
    (INVITE or not), so insertion order is deadline order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._due: OrderedDict[str, float] = OrderedDict()
        self._invites: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._due) + len(self._invites)

    def handed(self, key: str, now: float, *, invite: bool = False) -> None:
        """The request of transaction ``key`` went to the workers at ``now``."""
        due = self._invites if invite else self._due
        due[key] = now + self.timeout * (INVITE_FACTOR if invite else 1)
        due.move_to_end(key)

    def answered(self, key: str) -> None:
        """The workers answered ``key`` (or the transaction ended): no deadline any more."""
        if self._due.pop(key, None) is None:
            self._invites.pop(key, None)

    def next_due(self) -> float | None:
        """The earliest deadline (each kind's oldest key holds its kind's earliest)."""
        firsts = [next(iter(due.values())) for due in (self._due, self._invites) if due]
        return min(firsts) if firsts else None

    def expired(self, now: float) -> list[str]:
        """Keys whose deadline passed; they are forgotten."""
        out: list[str] = []
        for due in (self._due, self._invites):
            while due:
                key, when = next(iter(due.items()))
                if when > now:
                    break
                due.popitem(last=False)
                out.append(key)
        return out
