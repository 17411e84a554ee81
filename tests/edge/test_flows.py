"""Flows (edge/flows.py): which connection a dialog's peer reached us over."""

from __future__ import annotations

from sessiond.edge.flows import Flows
from sessiond.sip.message import SipRequest

TLS = ("TLS", ("192.0.2.7", 40001))
TCP = ("TCP", ("192.0.2.8", 40002))


def request(
    method: str = "INVITE", *, call_id: str = "c1", vias: int = 1, rr: bool = False
) -> SipRequest:
    headers = [("Via", f"SIP/2.0/TLS 192.0.2.{n}:5061;branch=z9hG4bK{n}") for n in range(vias)]
    headers += [("From", "<sip:alice@example.com>;tag=a1"), ("To", "<sip:bob@example.com>")]
    headers += [("Call-ID", call_id), ("CSeq", f"1 {method}")]
    if rr:
        headers.append(("Record-Route", "<sip:proxy.example.com;lr>"))
    return SipRequest.create(method, "sip:bob@example.com", headers)


def test_a_request_straight_from_the_phone_names_its_flow() -> None:
    flows = Flows()
    flows.learn(request(), TLS)
    assert flows.find("c1", "a1", routed=False) == TLS
    assert flows.find("c1", "a1", routed=True) is None  # a route set: the proxy's way
    assert flows.find("c1", "", routed=False) is None  # out of dialog
    assert flows.find("c2", "a1", routed=False) is None


def test_requests_through_a_proxy_name_no_flow() -> None:
    flows = Flows()
    flows.learn(request(vias=2), TLS)
    flows.learn(request(call_id="c2", rr=True), TLS)
    flows.learn(request("ACK", call_id="c3"), TLS)
    assert len(flows) == 0


def test_a_closed_connection_forgets_its_dialogs_and_a_new_flow_replaces_the_old() -> None:
    flows = Flows()
    flows.learn(request(), TLS)
    flows.learn(request(call_id="c2"), TLS)
    flows.learn(request(call_id="c2"), TCP)  # the phone reconnected
    flows.closed(TLS)
    assert flows.find("c1", "a1", routed=False) is None
    assert flows.find("c2", "a1", routed=False) == TCP
    flows.closed(TCP)
    assert len(flows) == 0


def test_the_oldest_go_first_beyond_the_limit() -> None:
    flows = Flows(limit=2)
    for n in range(3):
        flows.learn(request(call_id=f"c{n}"), TLS)
    assert len(flows) == 2
    assert flows.find("c0", "a1", routed=False) is None
    assert flows.find("c2", "a1", routed=False) == TLS
    flows.closed(TLS)
    assert len(flows) == 0
