"""Flows: which TCP or TLS connection a dialog's peer talks to us over. Sans-I/O.

Theory of operation
-------------------
A phone that calls us over TCP or TLS usually cannot take a connection from us: it sits
behind a NAT or a firewall, or its Contact names a port nothing listens on. Responses
already go back over the connection the request came on (RFC 3261 18.2.2); requests *to*
the phone (our BYE, a re-INVITE) would be sent to its Contact and fail. So, in the spirit
of RFC 5626 (outbound: requests go back over the "flow" the UA opened) and RFC 5923
(connection reuse), the edge remembers the flow a dialog's peer used:

- :meth:`Flows.learn` when a request arrives over TCP or TLS *directly from the user agent*
  (exactly one Via, no Record-Route: no proxy in between, so the far end of the connection
  is the phone itself), keyed by the dialog as the peer names it (Call-ID, From tag);
- :meth:`Flows.find` for a request we send in that dialog (Call-ID, its To tag) with no
  Route header: while that connection is open, the request goes over it, whatever the
  Contact says (RFC 5626 5.3); once it is closed, the Contact is used as before.

Requests through a proxy (a route set, or more than one Via) follow the route as before: the
proxy's connection is found by its address. An entry goes when its connection closes
(:meth:`Flows.closed`); at most ``limit`` are held (the oldest go first).
"""

from __future__ import annotations

from sessiond.sip.message import SipRequest

Address = tuple[str, int]
Flow = tuple[str, Address]  # transport ("TCP", "TLS") and the peer's address
Dialog = tuple[str, str]  # Call-ID, the peer's tag


class Flows:
    """Dialog -> the connection its peer opened to us."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._flows: dict[Dialog, Flow] = {}
        self._dialogs: dict[Flow, set[Dialog]] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def learn(self, req: SipRequest, flow: Flow) -> None:
        """``req`` arrived over ``flow`` (a TCP or TLS connection)."""
        if req.call_id is None or not req.from_tag or req.method in ("ACK", "CANCEL"):
            return
        if len(req.header_values("via")) != 1 or req.header_values("record-route"):
            return  # through a proxy: the connection's far end is not the dialog's peer
        dialog = (req.call_id, req.from_tag)
        old = self._flows.get(dialog)
        if old == flow:
            return
        if old is not None:
            self._forget(dialog, old)
        elif len(self._flows) >= self.limit:
            oldest = next(iter(self._flows))
            self._forget(oldest, self._flows[oldest])
        self._flows[dialog] = flow
        self._dialogs.setdefault(flow, set()).add(dialog)

    def find(self, call_id: str, peer_tag: str, *, routed: bool) -> Flow | None:
        """The flow a request we send to a dialog's peer (its tag: the request's To tag)
        goes over; None, as its URI says, out of dialog or with a route set (``routed``)."""
        if routed or not peer_tag:
            return None
        return self._flows.get((call_id, peer_tag))

    def closed(self, flow: Flow) -> None:
        """The connection of ``flow`` closed: its dialogs go back to their Contacts."""
        for dialog in self._dialogs.pop(flow, set()):
            self._flows.pop(dialog, None)

    def _forget(self, dialog: Dialog, flow: Flow) -> None:
        self._flows.pop(dialog, None)
        dialogs = self._dialogs.get(flow)
        if dialogs is not None:
            dialogs.discard(dialog)
            if not dialogs:
                del self._dialogs[flow]
