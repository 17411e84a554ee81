"""Two transaction layers over an in-memory, optionally lossy link, on a fake clock.

Messages cross the link as bytes and are parsed again, so the wire code is exercised too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sessiond.sip.actions import Action, Peer, Send
from sessiond.sip.message import SipRequest, SipResponse, parse_message
from sessiond.sip.transaction import TransactionLayer


@dataclass
class Node:
    name: str
    addr: Peer
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    events: list[Action] = field(default_factory=list)
    sent: list[SipRequest | SipResponse] = field(default_factory=list)


Drop = Callable[[Node, SipRequest | SipResponse], bool]


class Link:
    """Delivers each :class:`Send` to the node at the destination address, unless dropped."""

    def __init__(self, reliable: bool = False) -> None:
        self.now = 0.0
        self.reliable = reliable
        self.nodes: dict[Peer, Node] = {}
        self.drop: Drop = lambda node, msg: False
        self.dropped: list[SipRequest | SipResponse] = []

    def node(self, name: str, port: int) -> Node:
        n = Node(name, ("127.0.0.1", port))
        self.nodes[n.addr] = n
        return n

    def run(self, node: Node, actions: list[Action]) -> None:
        for action in actions:
            if not isinstance(action, Send):
                node.events.append(action)
                continue
            node.sent.append(action.message)
            if self.drop(node, action.message):
                self.dropped.append(action.message)
                continue
            dest = self.nodes[action.peer]
            msg = parse_message(bytes(action.message))
            self.run(dest, dest.layer.receive(msg, node.addr, self.now, reliable=self.reliable))

    def advance(self, until: float) -> None:
        """Move the clock to ``until``, firing every timer due on the way, in order."""
        while True:
            due = [(t, n) for n in self.nodes.values() if (t := n.layer.get_timer()) is not None]
            due = [d for d in due if d[0] <= until]
            if not due:
                break
            when, node = min(due, key=lambda d: d[0])
            self.now = max(self.now, when)
            self.run(node, node.layer.handle_timer(self.now))
        self.now = until


def events_of(node: Node, kind: type) -> list[Action]:
    return [e for e in node.events if isinstance(e, kind)]
