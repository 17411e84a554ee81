"""History lines: what redis-cli shows, parsed back into the fields the readers use."""

from __future__ import annotations

from sessiond.core.types import Step
from sessiond.store.history import line, parse


def test_a_line_reads_as_ctl_show_prints_and_parses_back() -> None:
    step = Step("Ringing", "Answer", "Answering", ("sip.respond(code=200)", "media.answer"))
    text = line(step, 3, "sip:abc@h:1", "worker-h-12", 1796462137.1234)
    assert text == (
        "2026-12-05T09:15:37.123Z v3 Ringing --Answer--> Answering"
        " [sip.respond(code=200), media.answer] sip:abc@h:1 (worker-h-12)"
    )
    assert parse(text) == {
        "at": "2026-12-05T09:15:37.123Z",
        "version": "3",
        "from": "Ringing",
        "event": "Answer",
        "to": "Answering",
        "actions": "sip.respond(code=200), media.answer",
        "event_id": "sip:abc@h:1",
        "worker": "worker-h-12",
    }


def test_payload_values_with_spaces_quotes_brackets_or_controls_come_back_whole() -> None:
    data = (("code", "486"), ("reason", 'Busy "Here" [now]'), ("digit", "\x1b"), ("target", ""))
    step = Step("Established", "Rejected", "Ended", (), data)
    text = line(step, 12, "e-1", "w", 0.0)
    assert "\x1b" not in text
    assert ' code=486 reason="Busy \\"Here\\" [now]" digit="\\u001b" target="" [] ' in text
    entry = parse(text)
    assert [(k, entry[k]) for k, _ in data] == list(data)
    assert (entry["to"], entry["actions"], entry["event_id"]) == ("Ended", "", "e-1")


def test_a_line_of_another_shape_is_kept_whole() -> None:
    assert parse("something else") == {"line": "something else"}
