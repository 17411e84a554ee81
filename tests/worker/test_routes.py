"""The routing file: parsing, file:line errors, matching, the defer/table check, and the
decision events the worker publishes (pure; the SIP side is in test_handlers.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec
import pytest

from sessiond.core import appschema
from sessiond.core.types import Event
from sessiond.store.location import Binding
from sessiond.table import Table
from sessiond.worker.handlers import (
    Accept,
    AskApp,
    AutoAnswer,
    CallUser,
    Defer,
    Forward,
    IncomingCallInfo,
    PlayAndHangup,
    Redirect,
    RegisteredUsers,
    Reject,
    Ring,
    decide_event,
    load_handler,
    media_option,
    ring_registered,
)
from sessiond.worker.routes import RoutesError, load_routes, parse_routes, uri_of

GOOD = """\
rules:
  - match: {to: "sip:busy@*"}
    do: {reject: 486}
  - match: {from: "re:^sip:vip-", headers: {contact: "*10.0.0.*"}}
    do: accept
  - match: {to: "sip:old@*"}
    do: {redirect: sip:new@example.com}
  - match: {to: "sip:desk@*"}
    do: {defer: 20}
  - match: {to: "sip:closed@*"}
    do: {play: {tone: 440, seconds: 2}}
  - match: {to: "sip:sales@*"}
    do: {forward: "sip:sales@10.0.0.7:5060"}
default: ring
"""


def call(to: str, frm: str = "<sip:a@h>", contact: str = "sip:a@h") -> IncomingCallInfo:
    headers = {"from": frm, "to": to, "contact": contact, "source": "1.2.3.4:5060"}
    return IncomingCallInfo("0123456789-abcdef", "c@h", frm, to, headers)


def test_rules_match_in_order_with_globs_regexes_and_headers() -> None:
    routes = parse_routes(GOOD, "r.yaml")
    assert routes.decide(call("Busy <sip:busy@host>;tag=x")) == Reject(486)
    assert routes.decide(call("<sip:x@h>", "<sip:vip-1@h>", "sip:vip@10.0.0.7")) == Accept()
    assert routes.decide(call("<sip:x@h>", "<sip:vip-1@h>", "sip:vip@10.9.0.7")) == Ring()
    assert routes.decide(call("sip:old@h")) == Redirect(("sip:new@example.com",))
    assert routes.decide(call("sip:desk@h")) == Defer()
    assert routes.decide(call("sip:closed@h")) == PlayAndHangup(tone=440.0, seconds=2.0)
    assert routes.decide(call("sip:sales@h")) == Forward("sip:sales@10.0.0.7:5060")
    assert routes.decide(call("sip:other@h")) == Ring()


def test_without_default_the_fallback_handler_decides() -> None:
    routes = parse_routes("rules: []\n", fallback=AskApp())
    assert routes.decide(call("sip:x@h")) == Ring()


def test_errors_name_file_and_line() -> None:
    text = """\
rules:
  - match: {to: "sip:a@*"}
    do: {reject: 99}
  - match: {subject: x}
    do: accept
  - match: {to: "re:("}
    do: {redirect: [http://x]}
  - match: {to: "sip:b@*"}
    do: dance
  - match: {headers: {user-agent: x}}
    do: {play: {tone: 440}}
  - match: {to: "sip:c@*"}
    do: {forward: "mailto:x@h"}
extra: 1
"""
    with pytest.raises(RoutesError) as info:
        parse_routes(text, "bad.yaml")
    problems = info.value.problems
    assert any(p.startswith("bad.yaml:3: reject:") for p in problems), problems
    assert any(p.startswith("bad.yaml:4: cannot match on 'subject'") for p in problems), problems
    assert any(p.startswith("bad.yaml:6: bad regular expression") for p in problems), problems
    assert any(p.startswith("bad.yaml:9: do: is accept") for p in problems), problems
    assert any(p.startswith("bad.yaml:10: header 'user-agent'") for p in problems), problems
    assert any(p.startswith("bad.yaml:11: play: a tone needs seconds") for p in problems), problems
    assert any(p.startswith("bad.yaml:13: forward: Forward needs") for p in problems), problems
    assert any(p.startswith("bad.yaml:14: unknown key 'extra'") for p in problems), problems


def test_unsafe_yaml_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("rules: !!python/object/apply:os.system [echo]\n")
    with pytest.raises(RoutesError, match=r"r.yaml:1:"):
        load_routes(path)
    path.write_text("default: accept\ndefault: ring\n")
    with pytest.raises(RoutesError, match=r"r.yaml:2: duplicate key"):
        load_routes(path)


def test_defer_seconds_must_match_the_table(default_table: Table) -> None:
    assert parse_routes(GOOD, "r.yaml").check_table(default_table) == []
    routes = parse_routes(GOOD.replace("{defer: 20}", "{defer: 5}"), "r.yaml")
    assert routes.check_table(default_table) == [
        "r.yaml:8: defer 5 s, but table default defers 20 s (its Deferred state's timeout)"
    ]


def test_uri_of() -> None:
    assert uri_of('"Bob" <sip:bob@h:5060;transport=udp>;tag=1') == "sip:bob@h:5060;transport=udp"
    assert uri_of("sip:bob@h;tag=1") == "sip:bob@h"


def test_decision_events_have_the_deterministic_id() -> None:
    invite = Event("sip:c:b:INVITE:1", "Invite", {"to": "<sip:old@h>", "call_id": "c"})
    routes = parse_routes(GOOD)
    event = decide_event(routes, invite, "0123456789-abcdef")
    assert event == Event(
        "sip:c:b:INVITE:1:answer",
        "RedirectCall",
        {"contacts": ["sip:new@example.com"]},
        "0123456789-abcdef",
    )
    assert decide_event(AskApp(), invite, "0123456789-abcdef") is None


def test_forward_becomes_a_forward_call_event_and_checks_its_target() -> None:
    invite = Event("sip:c:b:INVITE:1", "Invite", {"to": "<sip:sales@h>", "call_id": "c"})
    event = decide_event(parse_routes(GOOD), invite, "0123456789-abcdef")
    assert event == Event(
        "sip:c:b:INVITE:1:answer",
        "ForwardCall",
        {"target": "sip:sales@10.0.0.7:5060"},
        "0123456789-abcdef",
    )
    assert Forward("sip:x@h").table == "gateway"
    for bad in ("x@h", "sip:a b@h", "sip:<x>@h", "sip:a@h\r\nVia: x"):
        with pytest.raises(ValueError, match="Forward"):
            Forward(bad)


def test_load_handler_errors() -> None:
    with pytest.raises(ValueError, match="package.module:ClassName"):
        load_handler("nocolon")
    with pytest.raises(ValueError, match="has no class"):
        load_handler("sessiond.worker.handlers:Nope")
    with pytest.raises(ValueError, match="no decide"):
        load_handler("sessiond.worker.handlers:Ring")
    assert isinstance(load_handler("sessiond.worker.handlers:AutoAnswer").decide(call("x")), Accept)


def test_latch_private_for_every_call_or_per_rule() -> None:
    text = """\
latch_private: true
rules:
  - match: {to: "sip:lan@*"}
    do: accept
    latch_private: false
  - match: {to: "sip:desk@*"}
    do: accept
"""
    routes = parse_routes(text, "r.yaml")
    assert routes.session_fields(call("sip:desk@h")) == {"latch_private": "true"}
    assert routes.session_fields(call("sip:other@h")) == {"latch_private": "true"}
    assert routes.session_fields(call("sip:lan@h")) == {}
    one = parse_routes(
        'rules:\n  - match: {to: "sip:nat@*"}\n    do: accept\n    latch_private: true\n'
    )
    assert one.session_fields(call("sip:nat@h")) == {"latch_private": "true"}
    assert one.session_fields(call("sip:x@h")) == {}
    with pytest.raises(RoutesError) as info:
        parse_routes(
            'latch_private: yes\nrules:\n  - {match: {to: "a"}, do: accept, latch_private: 1}\n',
            "b.yaml",
        )
    assert info.value.problems == [
        "b.yaml:1: latch_private is true or false",
        "b.yaml:3: latch_private is true or false",
    ]


def test_an_outbound_call_asks_for_latch_private() -> None:
    from sessiond.core import appschema
    from sessiond.store import Keys
    from sessiond.worker.router import new_uac

    data = {"target": "sip:p@198.51.100.2:5070", "call_id": "c1@h", "local_tag": "t1"}
    assert appschema.problem("MakeCall", {**data, "latch_private": True}) is None
    assert appschema.problem("MakeCall", {**data, "latch_private": "yes"}) is not None
    for given, field in ((True, "true"), (None, None)):
        extra = {} if given is None else {"latch_private": given}
        new = new_uac(Keys("t"), Event("e", "MakeCall", {**data, **extra}, "0123456789-abcdef"))
        assert new is not None
        assert new.fields.get("latch_private") == field


SRTP_ROUTES = """\
rules:
  - match: {to: "sip:secure@*"}
    do: accept
    srtp: require
  - match: {to: "sip:gw@*"}
    do: {forward: {to: "sip:desk@10.0.0.8", srtp: "off"}}
    srtp: offer
  - match: {to: "sip:plain@*"}
    do: {forward: "sip:desk@10.0.0.8"}
"""


def test_srtp_per_route_and_per_forwarded_leg() -> None:
    routes = parse_routes(SRTP_ROUTES, "r.yaml")
    assert routes.decide(call("sip:secure@h")) == Accept()
    assert routes.session_fields(call("sip:secure@h")) == {"srtp": "require"}
    gateway = routes.decide(call("sip:gw@h"))
    assert gateway == Forward("sip:desk@10.0.0.8", target_srtp="off")
    assert routes.session_fields(call("sip:gw@h")) == {"srtp": "offer"}
    assert routes.decide(call("sip:plain@h")) == Forward("sip:desk@10.0.0.8")
    assert routes.session_fields(call("sip:plain@h")) == {}
    assert routes.session_fields(call("sip:nothing@h")) == {}
    invite = Event("sip:c:b:INVITE:1", "Invite", {"to": "<sip:gw@h>", "call_id": "c"})
    event = decide_event(routes, invite, "0123456789-abcdef")
    assert event is not None
    assert event.data == {"target": "sip:desk@10.0.0.8", "srtp": "off"}


def test_srtp_errors_name_file_and_line() -> None:
    text = """\
rules:
  - match: {to: "sip:a@*"}
    do: {reject: 486}
    srtp: require
  - match: {to: "sip:b@*"}
    do: accept
    srtp: always
  - match: {to: "sip:c@*"}
    do: {forward: {to: "sip:x@h", srtp: maybe}}
"""
    with pytest.raises(RoutesError) as info:
        parse_routes(text, "bad.yaml")
    problems = info.value.problems
    assert any(p.startswith("bad.yaml:4: srtp: needs a decision") for p in problems), problems
    assert any(p.startswith("bad.yaml:7: srtp is one of off") for p in problems), problems
    assert any(p.startswith("bad.yaml:9: forward: srtp is one of") for p in problems), problems
    with pytest.raises(ValueError, match="srtp is one of"):
        Forward("sip:x@h", target_srtp="yes")


def test_conference_answers_into_a_room_and_checks_its_name() -> None:
    text = 'rules:\n  - match: {to: "sip:room@*"}\n    do: {conference: standup}\n'
    invite = Event("sip:c:b:INVITE:1", "Invite", {"to": "<sip:room@h>", "call_id": "c"})
    event = decide_event(parse_routes(text), invite, "0123456789-abcdef")
    assert event == Event(
        "sip:c:b:INVITE:1:answer", "ConferenceCall", {"room": "standup"}, "0123456789-abcdef"
    )
    for bad in ("a b", "{x}", "", "r" * 65, 7):
        bad_text = text.replace("standup", repr(bad) if isinstance(bad, str) else str(bad))
        with pytest.raises(RoutesError, match=r"r.yaml:3: conference: "):
            parse_routes(bad_text, "r.yaml")


def _call_to(to: str, aor: str = "") -> IncomingCallInfo:
    return IncomingCallInfo("s1", "c1", "<sip:bob@example.com>", f"<{to}>", {}, aor)


def test_user_and_registered_ring_a_registered_user() -> None:
    routes = parse_routes(
        """\
rules:
  - match: {to: "sip:reception@*"}
    do: {user: alice}
  - match: {to: "sip:night@*"}
    do: {user: Carol@Example.ORG}
  - match: {to: "sip:*@example.com"}
    do: registered
""",
        fallback=AskApp(),
    )
    # {user: alice}: the domain of the call (its AOR when the edge serves it, else its To)
    assert routes.decide(_call_to("sip:reception@example.com", "reception@example.com")) == (
        CallUser("alice@example.com")
    )
    assert routes.decide(_call_to("sip:reception@pbx.test:5070")) == CallUser("alice@pbx.test")
    assert routes.decide(_call_to("sip:night@x")) == CallUser("Carol@example.org")
    # registered: the user the call is to when the edge serves its domain, else the fallback
    assert routes.decide(_call_to("sip:bob@example.com", "bob@example.com")) == (
        CallUser("bob@example.com")
    )
    assert routes.decide(_call_to("sip:bob@example.com")) == Ring()


def test_registered_users_is_the_fallback_without_routes() -> None:
    handler = RegisteredUsers(AutoAnswer())
    assert handler.decide(_call_to("sip:bob@example.com", "bob@example.com")) == (
        CallUser("bob@example.com")
    )
    assert handler.decide(_call_to("sip:bob@elsewhere")) == Accept()


def test_user_errors_name_file_and_line() -> None:
    with pytest.raises(RoutesError) as info:
        parse_routes(
            'rules:\n  - match: {to: "sip:a@*"}\n    do: {user: "a b"}\n'
            '  - match: {to: "sip:b@*"}\n    do: {user: [x]}\n',
            "u.yaml",
        )
    problems = info.value.problems
    assert any(p.startswith("u.yaml:3: user: expected a user name") for p in problems), problems
    assert any(p.startswith("u.yaml:5: user: expected a user name") for p in problems), problems


def test_a_registered_user_is_forwarded_to_its_best_binding_or_480() -> None:
    def binding(contact: str, q: float | None, source: str) -> Binding:
        return Binding(
            contact=contact,
            expires_at=2e9,
            call_id="r",
            cseq=1,
            edge="edge-b",
            transport="tcp",
            source=source,
            registered_at=1.0,
            q=q,
        )

    best = binding("sip:alice@10.0.0.5:5060;transport=tcp", 0.9, "203.0.113.7:40001")
    other = binding("sip:alice@198.51.100.2", 0.1, "198.51.100.2:5060")
    call = CallUser("alice@example.com")
    forward = ring_registered(call, [best, other])
    assert forward == Forward(
        "sip:alice@10.0.0.5:5060;transport=tcp",
        to="sip:alice@example.com",
        edge="edge-b",
        destination="TCP 203.0.113.7:40001",
        next=(("sip:alice@198.51.100.2", "edge-b", "TCP 198.51.100.2:5060"),),
    )
    event = decide_event(_Fixed(forward), Event("i1", "Invite", {}, ""), "s1")
    assert event is not None
    assert event.type == "ForwardCall"
    assert event.data == {
        "target": "sip:alice@10.0.0.5:5060;transport=tcp",
        "to": "sip:alice@example.com",
        "edge": "edge-b",
        "destination": "TCP 203.0.113.7:40001",
        "next": '[{"target":"sip:alice@198.51.100.2","edge":"edge-b",'
        '"destination":"TCP 198.51.100.2:5060"}]',
    }
    assert appschema.problem("ForwardCall", event.data) is None
    assert ring_registered(call, []) == Reject(480)
    # a contact a forward cannot take, or over a transport the edge lacks, is passed over
    websocket = msgspec.structs.replace(best, transport="WS")
    only = ring_registered(call, [binding("tel:+1555", 1.0, "1.2.3.4:5"), websocket, other])
    assert isinstance(only, Forward)
    assert (only.target, only.next) == ("sip:alice@198.51.100.2", ())
    with pytest.raises(ValueError, match="user@domain"):
        CallUser("alice")


class _Fixed:
    def __init__(self, decision: Forward) -> None:
        self.decision = decision

    def decide(self, call: IncomingCallInfo) -> Forward:
        return self.decision


def test_user_with_no_answer_and_then() -> None:
    routes = parse_routes(
        'rules:\n  - match: {to: "sip:support@*"}\n'
        '    do: {user: {name: bob, no_answer: 15, then: "sip:vm@10.0.0.9"}}\n'
    )
    decision = routes.decide(_call_to("sip:support@example.com", "support@example.com"))
    assert decision == CallUser("bob@example.com", 15.0, "sip:vm@10.0.0.9")
    assert isinstance(decision, CallUser)
    # not registered: straight to then; registered: then after the contacts, each 15 s
    assert ring_registered(decision, []) == Forward("sip:vm@10.0.0.9", ring=15.0)
    with pytest.raises(RoutesError) as info:
        parse_routes(
            'rules:\n  - match: {to: "sip:a@*"}\n    do: {user: {name: a, then: "mailto:x"}}\n'
            '  - match: {to: "sip:b@*"}\n    do: {user: {name: b, no_answer: -1}}\n'
            '  - match: {to: "sip:c@*"}\n    do: {user: {no_answer: 3}}\n',
            "n.yaml",
        )
    problems = info.value.problems
    assert any(p.startswith("n.yaml:3: user: Forward needs") for p in problems), problems
    assert any(p.startswith("n.yaml:5: user: expected a positive") for p in problems), problems
    assert any(p.startswith("n.yaml:7: user: expected USER or") for p in problems), problems


def test_hunt_groups() -> None:
    routes = parse_routes(
        'rules:\n  - match: {to: "sip:sales@*"}\n'
        '    do: {hunt: [alice, bob@example.org, "sip:desk@10.0.0.7"]}\n'
        '  - match: {to: "sip:ops@*"}\n'
        "    do: {hunt: {members: [carol, dave], no_answer: 10}}\n"
    )
    sales = routes.decide(_call_to("sip:sales@example.com", "sales@example.com"))
    assert sales == CallUser("alice@example.com", members=("bob@example.org", "sip:desk@10.0.0.7"))
    assert isinstance(sales, CallUser)
    assert sales.aors == ("alice@example.com", "bob@example.org")
    ops = routes.decide(_call_to("sip:ops@example.com", "ops@example.com"))
    assert ops == CallUser("carol@example.com", 10.0, None, ("dave@example.com",))
    # nobody registered: the URI member answers for the group
    assert ring_registered(sales, [], {}) == Forward("sip:desk@10.0.0.7")
    with pytest.raises(RoutesError) as info:
        parse_routes(
            'rules:\n  - match: {to: "sip:a@*"}\n    do: {hunt: ["sip:x@y", alice]}\n'
            '  - match: {to: "sip:b@*"}\n    do: {hunt: []}\n',
            "h.yaml",
        )
    problems = info.value.problems
    assert any(p.startswith("h.yaml:3: hunt: the first member is a user") for p in problems)
    assert any(p.startswith("h.yaml:5: hunt: expected a list") for p in problems), problems


def _binding(contact: str, q: float | None, port: int) -> Binding:
    return Binding(
        contact=contact,
        expires_at=2e9,
        call_id=f"r{port}",
        cseq=1,
        edge="edge-a",
        transport="udp",
        source=f"127.0.0.1:{port}",
        registered_at=1.0,
        q=q,
    )


def test_contacts_of_equal_q_ring_together_groups_by_decreasing_q() -> None:
    """RFC 3261 16.6 (Kamailio's t_load_contacts): q 1.0 (no q), 1.0, 0.5, 0.5, 0.1 ring as
    three groups; ``then`` is a group of its own; the ForwardCall's next marks the targets
    that ring with the one before them."""
    found = [
        _binding("sip:a@1", None, 1),
        _binding("sip:a@2", 1.0, 2),
        _binding("sip:a@3", 0.5, 3),
        _binding("sip:a@4", 0.5, 4),
        _binding("sip:a@5", 0.1, 5),
    ]
    forward = ring_registered(CallUser("alice@example.com", then="sip:vm@h"), found)
    assert isinstance(forward, Forward)
    assert forward.groups == (2, 2, 1, 1)
    event = decide_event(_Fixed(forward), Event("i1", "Invite", {}, ""), "s1")
    assert event is not None
    together = [bool(e.get("parallel")) for e in json.loads(event.data["next"])]
    assert together == [True, False, True, False, False]
    assert appschema.problem("ForwardCall", event.data) is None
    every = ring_registered(CallUser("alice@example.com", fork="parallel"), found)
    assert isinstance(every, Forward)
    assert every.groups == (5,)
    one_by_one = ring_registered(CallUser("alice@example.com", fork="sequential"), found)
    assert isinstance(one_by_one, Forward)
    assert one_by_one.groups == ()
    # distinct q: one at a time, and the ForwardCall reads as before forking existed
    single = ring_registered(CallUser("alice@example.com"), [found[1], found[2]])
    assert isinstance(single, Forward)
    assert single.groups == ()


def test_a_ring_all_hunt_group_rings_every_member_at_once() -> None:
    found = {"bob@example.com": [_binding("sip:b@1", 0.3, 7)]}
    call = CallUser("alice@example.com", members=("bob@example.com", "sip:desk@h"), fork="parallel")
    forward = ring_registered(call, [_binding("sip:a@1", 0.9, 6)], found)
    assert isinstance(forward, Forward)
    assert forward.groups == (3,)
    event = decide_event(_Fixed(forward), Event("i1", "Invite", {}, ""), "s1")
    assert event is not None
    assert event.data["to"] == "sip:alice@example.com"
    # bob's phone gets To: bob; the URI member the first member's AOR (as before)
    tos = [e.get("to") for e in json.loads(event.data["next"])]
    assert tos == ["sip:bob@example.com", None]
    in_turn = dataclasses.replace(call, fork="q")
    forward = ring_registered(in_turn, [_binding("sip:a@1", 0.9, 6)], found)
    assert isinstance(forward, Forward)
    assert forward.groups == ()


def test_fork_and_ring_in_routes() -> None:
    routes = parse_routes(
        'rules:\n  - match: {to: "sip:desk@*"}\n    do: {user: {name: alice, fork: parallel}}\n'
        '  - match: {to: "sip:one@*"}\n    do: {user: {name: alice, fork: sequential}}\n'
        '  - match: {to: "sip:all@*"}\n'
        "    do: {hunt: {members: [alice, bob], ring: all, no_answer: 20}}\n"
        '  - match: {to: "sip:turn@*"}\n    do: {hunt: {members: [alice, bob], ring: sequential}}\n'
    )

    def to(user: str) -> object:
        return routes.decide(_call_to(f"sip:{user}@example.com", f"{user}@example.com"))

    assert to("desk") == CallUser("alice@example.com", fork="parallel")
    assert to("one") == CallUser("alice@example.com", fork="sequential")
    assert to("all") == CallUser("alice@example.com", 20.0, None, ("bob@example.com",), "parallel")
    assert to("turn") == CallUser("alice@example.com", members=("bob@example.com",))
    with pytest.raises(RoutesError) as info:
        parse_routes(
            'rules:\n  - match: {to: "sip:a@*"}\n    do: {user: {name: a, fork: all}}\n'
            '  - match: {to: "sip:b@*"}\n    do: {hunt: {members: [a, b], ring: parallel}}\n'
            '  - match: {to: "sip:c@*"}\n    do: {hunt: {members: [a], fork: parallel}}\n',
            "f.yaml",
        )
    problems = info.value.problems
    assert "f.yaml:3: user: fork is one of q, parallel, sequential, not 'all'" in problems
    assert "f.yaml:5: hunt: ring is all or sequential, not 'parallel'" in problems
    assert any(p.startswith("f.yaml:7: hunt: expected [MEMBER...] or") for p in problems)


BYPASS_ROUTES = """\
media: bypass
rules:
  - match: {to: "sip:trunk@*"}
    do: {forward: "sip:pbx@10.0.0.9"}
  - match: {to: "sip:anchored@*"}
    do: {forward: {to: "sip:pbx@10.0.0.9", media: anchor}}
  - match: {to: "sip:rule@*"}
    do: {user: alice}
    media: anchor
  - match: {to: "sip:ivr@*"}
    do: accept
    srtp: require
"""


def test_media_bypass_per_forward_rule_and_file() -> None:
    routes = parse_routes(BYPASS_ROUTES, "r.yaml")
    assert routes.session_fields(call("sip:trunk@h")) == {"media": "bypass"}
    assert routes.decide(call("sip:anchored@h")) == Forward("sip:pbx@10.0.0.9", media="anchor")
    assert routes.session_fields(call("sip:rule@h")) == {}
    only = parse_routes(
        'rules:\n  - match: {to: "sip:t@*"}\n    do: {forward: {to: "sip:p@h", media: bypass}}\n'
    )
    assert only.decide(call("sip:t@h")) == Forward("sip:p@h", media="bypass")
    assert only.session_fields(call("sip:t@h")) == {}  # the Forward itself carries it


def test_media_option_keeps_bypass_only_on_forwards() -> None:
    bypass = {"media": "bypass", "srtp": "require", "latch_private": "true"}
    assert media_option(Forward("sip:p@h"), bypass) == {"media": "bypass"}
    assert media_option(CallUser("alice@h"), {"media": "bypass"}) == {"media": "bypass"}
    assert media_option(Accept(), bypass) == {"srtp": "require", "latch_private": "true"}
    assert media_option(Forward("sip:p@h", media="anchor"), bypass) == {
        "srtp": "require",
        "latch_private": "true",
    }
    assert media_option(Forward("sip:p@h", media="bypass"), {}) == {"media": "bypass"}


def test_media_bypass_with_srtp_is_an_error() -> None:
    text = """\
media: bypass
rules:
  - match: {to: "sip:a@*"}
    do: {forward: "sip:x@h"}
    srtp: require
  - match: {to: "sip:b@*"}
    do: {forward: {to: "sip:x@h", srtp: "off"}}
  - match: {to: "sip:c@*"}
    do: {forward: {to: "sip:x@h", media: bypass, srtp: offer}}
  - match: {to: "sip:d@*"}
    do: {forward: {to: "sip:x@h", media: sideways}}
  - match: {to: "sip:e@*"}
    do: {user: bob}
    latch_private: true
"""
    with pytest.raises(RoutesError) as info:
        parse_routes(text, "bad.yaml")
    problems = info.value.problems
    assert any(p.startswith("bad.yaml:5: srtp does not apply to media: bypass") for p in problems)
    assert any(p.startswith("bad.yaml:7: srtp does not apply") for p in problems), problems
    assert any(p.startswith("bad.yaml:9: forward: srtp does not apply") for p in problems)
    assert any(p.startswith("bad.yaml:11: forward: media is one of anchor") for p in problems)
    assert any(p.startswith("bad.yaml:14: latch_private does not apply") for p in problems)
    with pytest.raises(RoutesError, match="srtp does not apply"):
        parse_routes('media: bypass\nrules: []\ndefault: {forward: {to: "sip:x@h", srtp: "off"}}\n')
    with pytest.raises(RoutesError, match="media is one of anchor, bypass"):
        parse_routes("media: yes\nrules: []\n")
    with pytest.raises(ValueError, match="srtp does not apply"):
        Forward("sip:x@h", target_srtp="off", media="bypass")


def test_a_bypassed_leg_is_placed_with_the_callers_offer() -> None:
    from sessiond.store.keys import Keys
    from sessiond.worker.router import new_uac

    data = {
        "target": "sip:b@h",
        "call_id": "c1@sessiond",
        "local_tag": "t1",
        "media": "bypass",
        "sdp": "v=0\r\n",
    }
    assert appschema.problem("MakeCall", data) is None
    assert appschema.problem("MakeCall", {**data, "media": "around"}) is not None
    new = new_uac(Keys("t"), Event("e1", "MakeCall", data, "0123456789-x"))
    assert new is not None
    assert new.fields["media"] == "bypass"
    assert "media_node" not in new.fields
