"""The dialog duties the transaction layer leaves to the edge (sans-I/O, injected clock).

* A 2xx we sent to an INVITE is retransmitted, T1 doubling up to T2, until its ACK arrives or
  64*T1 pass (RFC 3261 13.3.1.4). Only over UDP: a reliable transport does not lose it.
* An ACK we sent for a 2xx is kept for 64*T1 and sent again for every retransmission of that
  2xx (13.2.2.4), without bothering the workers.
* A reliable provisional response (RFC 3262 3) is retransmitted, T1 doubling, until its PRACK
  arrives or 64*T1 pass. Keys are (Call-ID, RSeq).

Keys are (Call-ID, CSeq number). Everything here is short lived and in memory: after an edge
restart the far end's retransmissions reach the workers instead, which re-emit their commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessiond.sip.timers import TimerConfig

Address = tuple[str, int]
DialogKey = tuple[str, int]


@dataclass
class Retransmit:
    """Bytes to (re)send to ``peer`` over ``transport``."""

    data: bytes
    transport: str
    peer: Address
    next_at: float
    interval: float
    deadline: float


class DialogDuties:
    def __init__(self, timers: TimerConfig) -> None:
        self.timers = timers
        self._answers: dict[DialogKey, Retransmit] = {}
        self._acks: dict[DialogKey, Retransmit] = {}
        self._provisionals: dict[DialogKey, Retransmit] = {}

    def answered(
        self, key: DialogKey, data: bytes, transport: str, peer: Address, now: float
    ) -> None:
        """We sent a 2xx to an INVITE: retransmit it until acknowledged (UDP only)."""
        self._keep_sending(self._answers, key, data, transport, peer, now)

    def provisional(
        self, key: DialogKey, data: bytes, transport: str, peer: Address, now: float
    ) -> None:
        """We sent a reliable 1xx (RSeq in ``key``): retransmit it until PRACKed (UDP)."""
        self._keep_sending(self._provisionals, key, data, transport, peer, now)

    def _keep_sending(
        self,
        pending: dict[DialogKey, Retransmit],
        key: DialogKey,
        data: bytes,
        transport: str,
        peer: Address,
        now: float,
    ) -> None:
        if transport == "UDP":  # a reliable transport does not lose it
            t1 = self.timers.t1
            pending[key] = Retransmit(
                data, transport, peer, now + t1, t1, now + self.timers.timeout
            )

    def pracked(self, key: DialogKey) -> None:
        """The PRACK for our reliable 1xx arrived."""
        self._provisionals.pop(key, None)

    def acknowledged(self, key: DialogKey) -> None:
        """The ACK for our 2xx arrived."""
        self._answers.pop(key, None)

    def sent_ack(
        self, key: DialogKey, data: bytes, transport: str, peer: Address, now: float
    ) -> None:
        """We ACKed a 2xx: remember the ACK for the 2xx's retransmissions."""
        self._acks.pop(key, None)  # to the end: the dict stays in order of deadline
        self._acks[key] = Retransmit(data, transport, peer, now, 0.0, now + self.timers.timeout)

    def ack_for(self, key: DialogKey) -> Retransmit | None:
        """The ACK to send again for a retransmitted 2xx, if we sent one."""
        return self._acks.get(key)

    def next_due(self) -> float | None:
        """The earliest retransmission (or expiry) :meth:`due` has work for."""
        times = [r.next_at for p in (self._answers, self._provisionals) for r in p.values()]
        times += [r.deadline for p in (self._answers, self._provisionals) for r in p.values()]
        return min(times) if times else None

    def due(self, now: float) -> list[Retransmit]:
        """What to send now; forgets what has expired."""
        out = []
        for pending, cap in ((self._answers, self.timers.t2), (self._provisionals, None)):
            for key, retx in list(pending.items()):
                if now >= retx.deadline:
                    del pending[key]
                elif now >= retx.next_at:
                    out.append(retx)
                    retx.interval = (
                        retx.interval * 2 if cap is None else min(retx.interval * 2, cap)
                    )
                    retx.next_at = now + retx.interval
        # Kept in order of deadline (each is 64*T1 after its sending, a resent one moves to
        # the end): only the expired ones at the front are looked at, not every ACK of the
        # last 64*T1 on every firing (thousands at 100 calls/s, a quarter of the edge's CPU).
        acks = self._acks
        while acks:
            key = next(iter(acks))
            if now < acks[key].deadline:
                break
            del acks[key]
        return out
