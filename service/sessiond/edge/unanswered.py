"""Server transactions handed to the workers (the TU) and not answered yet. Sans-I/O.

The transaction layer keeps a server transaction until the TU sends its final response. An
event the workers never act on (no worker runs, the event was lost, a table that never
answers) would keep its transaction, and the parsed request in it, for the edge's whole
life: a flood of requests nobody answers grew the edge without bound (issue 18). So a
request the workers have not answered at all (not even a provisional response) within
``timeout`` (64*T1: a non-INVITE client has given up by then, RFC 3261 17.1.2.2) is answered
by the edge with a 503, and its transaction ends as any answered one does.
"""

from __future__ import annotations

from collections import OrderedDict


class Unanswered:
    """Keys of server transactions waiting for the TU, oldest first (one timeout for all,
    so insertion order is deadline order)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._due: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._due)

    def handed(self, key: str, now: float) -> None:
        """The request of transaction ``key`` went to the workers at ``now``."""
        self._due[key] = now + self.timeout
        self._due.move_to_end(key)

    def answered(self, key: str) -> None:
        """The workers answered ``key`` (or the transaction ended): no deadline any more."""
        self._due.pop(key, None)

    def expired(self, now: float) -> list[str]:
        """Keys whose deadline passed; they are forgotten."""
        out: list[str] = []
        while self._due:
            key, due = next(iter(self._due.items()))
            if due > now:
                break
            self._due.popitem(last=False)
            out.append(key)
        return out
