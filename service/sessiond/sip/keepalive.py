"""OPTIONS keepalive: is a peer (our registrar, a proxy) still answering? Sans-I/O.

Theory of operation
-------------------
:class:`Pinger` sends an out-of-dialog OPTIONS (RFC 3261 11) to ``target`` every
``interval`` seconds, each with a new Call-ID, and the adapter feeds back final responses
(:meth:`~Pinger.on_response`) and transaction failures (:meth:`~Pinger.on_timeout`). Any
final response counts as reachable, whatever its code (a 404 or 405 still proves the peer
is up); the round-trip time is measured from sending to the final response, retransmissions
included. A ping that gets no answer (timer F, or a transport error) counts one failure;
``failures`` is the number of failed pings in a row since the last answer.
"""

from __future__ import annotations

import secrets

from sessiond.sip.message import SipRequest, SipResponse
from sessiond.sip.registration import Local


class Pinger:
    """OPTIONS to one target, every ``interval`` seconds."""

    def __init__(
        self,
        target: str,
        local: Local,
        *,
        interval: float,
        from_uri: str = "",
        user_agent: str = "sessiond",
    ) -> None:
        self.target = target
        self.local = local
        self.interval = interval
        self.from_uri = from_uri or f"sip:sessiond@{local.sent_by}"
        self.user_agent = user_agent
        self.reachable: bool | None = None  # None: no ping has ended yet
        self.rtt: float | None = None  # seconds, of the last answered ping
        self.failures = 0
        self.answered = 0
        self.last_code = 0
        self._pending: dict[str, float] = {}  # Call-ID -> when sent
        self._timer: float | None = None

    def start(self, now: float) -> list[SipRequest]:
        self._timer = now
        return self.handle_timer(now)

    def stop(self) -> None:
        self._timer = None

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> list[SipRequest]:
        if self._timer is None or now < self._timer:
            return []
        self._timer = now + self.interval
        return [self._options(now)]

    def on_response(self, response: SipResponse, now: float) -> None:
        sent = self._pending.pop(response.call_id or "", None) if response.is_final else None
        if sent is None:
            return
        self.rtt = now - sent
        self.reachable = True
        self.failures = 0
        self.answered += 1
        self.last_code = response.status

    def on_timeout(self, call_id: str) -> None:
        if self._pending.pop(call_id, None) is None:
            return
        self.reachable = False
        self.failures += 1
        self.last_code = 408

    def _options(self, now: float) -> SipRequest:
        call_id = f"{secrets.token_hex(10)}@{self.local.host}"
        self._pending[call_id] = now
        headers = [
            (
                "Via",
                f"SIP/2.0/{self.local.transport} {self.local.sent_by};branch="
                f"z9hG4bK{secrets.token_hex(8)};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<{self.from_uri}>;tag={secrets.token_hex(5)}"),
            ("To", f"<{self.target}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 OPTIONS"),
            ("Accept", "application/sdp"),
            ("User-Agent", self.user_agent),
        ]
        return SipRequest.create("OPTIONS", self.target, headers)
