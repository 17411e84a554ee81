"""The application's media commands in the default table: play, stop, record, stop
recording, bridge; their reports (PlayFinished, RecordingStopped) published, also after the
call ended; and the play-and-hang-up handler (answer, play once ACKed, BYE when done)."""

from __future__ import annotations

import pytest

from sessiond.core.types import Outcome

from .flow import OUR_SDP, SID, THEIR_SDP, Call, app_event, media, one, published, sip


def test_play_sends_the_tone_to_the_media_node() -> None:
    call = Call.established()
    verdict = call.on("Play", tone=440, seconds=2, loop=False, other="x")  # other: not play's
    assert one(verdict, "media", "play") == {
        "media_id": call["media_id"],
        "tone": 440,
        "seconds": 2,
        "loop": False,
    }
    assert call.state == "Established"
    assert sip(verdict) == []


def test_play_while_ringing_is_allowed() -> None:
    call = Call.established(state="Ringing")
    verdict = call.on("Play", file="/prompts/wait.wav")
    assert one(verdict, "media", "play")["file"] == "/prompts/wait.wav"


def test_record_names_the_file_after_the_session() -> None:
    call = Call.established()
    verdict = call.on("Record", path="/rec/{sid}.wav", direction="both")
    assert one(verdict, "media", "record") == {
        "media_id": call["media_id"],
        "path": f"/rec/{SID}.wav",
        "direction": "both",
    }


def test_record_before_the_answer_is_not_in_the_table() -> None:
    call = Call.established(state="Ringing")
    assert call.on("Record", path="/rec/x.wav").outcome is Outcome.NO_TRANSITION


@pytest.mark.parametrize(
    ("event", "command"),
    [("StopPlay", "stop_play"), ("StopRecord", "stop_record"), ("Unbridge", "unbridge")],
)
def test_stop_commands_go_to_the_media_node(event: str, command: str) -> None:
    call = Call.established()
    verdict = call.on(event)
    assert one(verdict, "media", command) == {"media_id": call["media_id"]}


def test_bridge_names_the_other_sessions_leg() -> None:
    call = Call.established()
    verdict = call.on("Bridge", other="fedcba9876-543210")
    assert one(verdict, "media", "bridge") == {
        "media_id": call["media_id"],
        "other": "fedcba9876-543210.m",
    }


@pytest.mark.parametrize("state", ["Established", "Terminated"])
def test_play_and_record_reports_reach_the_application(state: str) -> None:
    call = Call.established(state=state)
    finished = call.on("PlayFinished")
    assert published(finished) == ["PlayFinished"]
    stopped = call.on("RecordingStopped", path="/rec/x.wav", seconds=3.5)
    assert published(stopped) == ["RecordingStopped"]
    report = app_event(stopped, "RecordingStopped")
    assert (report["path"], report["seconds"]) == ("/rec/x.wav", 3.5)
    assert call.state == state


def test_play_and_hang_up_answers_plays_once_acked_and_hangs_up() -> None:
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="t")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    answered = call.on("PlayAndHangup", tone=425, seconds=3)
    assert call.state == "Answering"
    assert sip(answered) == ["respond 200"]
    assert media(answered) == ["answered"]  # nothing played before the ACK
    ack = call.on("Ack")
    assert call.state == "Established"
    assert one(ack, "media", "play") == {
        "media_id": call["media_id"],
        "tone": 425.0,
        "seconds": 3.0,
    }
    done = call.on("PlayFinished")
    assert call.state == "Terminating"
    assert sip(done) == ["bye"]
    assert published(done) == ["PlayFinished"]
    assert (call["end_code"], call["end_reason"]) == ("200", "played and hung up")
