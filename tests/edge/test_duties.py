"""2xx retransmission until ACK and re-ACK of retransmitted 2xx, on a fake clock."""

from __future__ import annotations

from sessiond.edge.duties import DialogDuties
from sessiond.sip.timers import TimerConfig


def test_2xx_retransmitted_doubling_to_t2_until_acked() -> None:
    duties = DialogDuties(TimerConfig(t1=0.5, t2=4.0))
    duties.answered(("c", 1), b"200", "UDP", ("127.0.0.1", 5060), 0.0)
    sent = [t for t in (x / 10 for x in range(0, 200)) if duties.due(t)]
    # T1 doubling, capped at T2: 0.5, 1.5, 3.5, 7.5, 11.5, 15.5...
    assert sent[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    duties.acknowledged(("c", 1))
    assert duties.due(100.0) == []


def test_2xx_retransmission_gives_up_after_64_t1_and_not_on_tcp() -> None:
    duties = DialogDuties(TimerConfig(t1=0.5))
    duties.answered(("c", 1), b"200", "UDP", ("h", 1), 0.0)
    duties.answered(("c", 2), b"200", "TCP", ("h", 1), 0.0)
    assert duties.due(32.0) == []
    assert duties.due(40.0) == []


def test_ack_kept_for_retransmitted_2xx() -> None:
    duties = DialogDuties(TimerConfig(t1=0.5))
    duties.sent_ack(("c", 1), b"ACK", "UDP", ("h", 1), 0.0)
    ack = duties.ack_for(("c", 1))
    assert ack is not None
    assert ack.data == b"ACK"
    assert duties.ack_for(("c", 2)) is None
    duties.due(33.0)
    assert duties.ack_for(("c", 1)) is None


def test_each_ack_expires_64_t1_after_its_own_last_sending() -> None:
    """An ACK sent again (a re-sent ACK command) is kept 64*T1 from then, behind ACKs sent
    before it that expire first; ACKs not yet due stay."""
    duties = DialogDuties(TimerConfig(t1=0.5))  # kept 32 s
    duties.sent_ack(("a", 1), b"ACK a", "UDP", ("h", 1), 0.0)
    duties.sent_ack(("b", 1), b"ACK b", "UDP", ("h", 1), 1.0)
    duties.sent_ack(("a", 1), b"ACK a2", "UDP", ("h", 1), 2.0)
    duties.sent_ack(("c", 1), b"ACK c", "UDP", ("h", 1), 3.0)
    duties.due(33.5)
    assert duties.ack_for(("b", 1)) is None
    assert [a.data for k in ("a", "c") if (a := duties.ack_for((k, 1)))] == [b"ACK a2", b"ACK c"]
    duties.due(34.5)
    assert duties.ack_for(("a", 1)) is None
    assert duties.ack_for(("c", 1)) is not None
    duties.due(35.0)
    assert duties.ack_for(("c", 1)) is None


def test_reliable_1xx_retransmitted_doubling_without_cap_until_pracked() -> None:
    """RFC 3262 3: T1, 2*T1, 4*T1... (no T2 cap), until the PRACK or 64*T1."""
    duties = DialogDuties(TimerConfig())
    duties.provisional(("c", 1), b"183", "UDP", ("127.0.0.1", 5060), 0.0)
    sent = [t for t in (0.4, 0.5, 1.4, 1.5, 3.4, 3.5, 7.5) if duties.due(t)]
    assert sent == [0.5, 1.5, 3.5, 7.5]  # intervals 0.5, 1, 2, 4: past T2 (4 s) uncapped
    assert duties.due(14.0) == []
    assert [r.data for r in duties.due(15.5)] == [b"183"]  # 8 s after 7.5
    duties.pracked(("c", 1))
    assert duties.due(100.0) == []
    duties.provisional(("c", 2), b"180", "UDP", ("127.0.0.1", 5060), 0.0)
    assert duties.due(40.0) == []  # 64*T1 passed: given up
    duties.provisional(("c", 3), b"180", "TCP", ("127.0.0.1", 5060), 0.0)
    assert duties.due(0.5) == []  # a reliable transport does not lose it
