"""Transaction timer values (RFC 3261 17.1.1.1, Table 4) and a small deadline set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessiond.sip.actions import Action, Peer
    from sessiond.sip.message import SipRequest, SipResponse


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max network life)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (and M, L of RFC 6026)."""
        return 64 * self.t1


class Deadlines:
    """Named absolute deadlines; the earliest is what :meth:`next` reports."""

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def arm(self, name: str, when: float) -> None:
        """Set (or move) timer ``name`` to fire at ``when``."""
        self._at[name] = when

    def cancel(self, *names: str) -> None:
        """Stop the given timers (absent ones are ignored)."""
        for name in names:
            self._at.pop(name, None)

    def clear(self) -> None:
        """Stop every timer."""
        self._at.clear()

    def next(self) -> float | None:
        """The earliest deadline, or ``None`` when no timer runs."""
        return min(self._at.values()) if self._at else None

    def pop_due(self, now: float) -> str | None:
        """Remove and return the earliest timer due at ``now`` (``None`` if none is)."""
        if not self._at:
            return None
        name = min(self._at, key=self._at.__getitem__)
        if self._at[name] > now:
            return None
        del self._at[name]
        return name

    def __contains__(self, name: str) -> bool:
        return name in self._at


class TimerDriven:
    """What client and server transactions share: the request and where it goes, the last
    response, and ``get_timer``/``handle_timer`` over their :class:`Deadlines` (subclasses
    arm ``self._deadlines`` and implement :meth:`_fire`)."""

    def __init__(
        self, key: str, request: SipRequest, peer: Peer, reliable: bool, timers: TimerConfig
    ) -> None:
        self.key = key
        self.request = request
        self.peer = peer
        self.reliable = reliable
        self.timers = timers
        self.last_response: SipResponse | None = None
        self._deadlines = Deadlines()
        self._interval = timers.t1

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (``None``: no timer runs)."""
        return self._deadlines.next()

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``."""
        out: list[Action] = []
        while (name := self._deadlines.pop_due(now)) is not None:
            out += self._fire(name, now)
        return out

    def _fire(self, name: str, now: float) -> list[Action]:
        raise NotImplementedError
