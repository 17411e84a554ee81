"""The sans-I/O conference mixer: N-1 mixes, clipping, flags, missing frames, VAD, sources."""

from __future__ import annotations

import math
from array import array

import pytest

from sessiond.cli.bench.mixer import bench_mixer
from sessiond.media.codecs import FRAME_SAMPLES, SILENCE
from sessiond.media.mixer import GAIN_MAX_DB, GAIN_MIN_DB, Room, SourceFinished, TalkingChanged
from sessiond.media.playback import Player
from sessiond.media.tones import ToneGenerator
from sessiond.media.vad import FLOOR_DBOV, VoiceActivity, level_dbov


def dc(value: int) -> bytes:
    """A constant frame: makes sums readable."""
    return array("h", [value] * FRAME_SAMPLES).tobytes()


def samples(frame: bytes) -> list[int]:
    return list(array("h", frame))


def room_of(*ids: str, limiter: bool = False) -> Room:
    room = Room(limiter=limiter)
    for member_id in ids:
        room.join(member_id)
    return room


def test_each_member_hears_the_others_and_not_itself() -> None:
    room = room_of("a", "b", "c", "d")
    tick = room.tick({"a": dc(100), "b": dc(200), "c": dc(400)})
    assert samples(tick.frames["a"]) == [600] * FRAME_SAMPLES
    assert samples(tick.frames["b"]) == [500] * FRAME_SAMPLES
    assert samples(tick.frames["c"]) == [300] * FRAME_SAMPLES
    assert samples(tick.frames["d"]) == [700] * FRAME_SAMPLES
    assert tick.mix == tick.frames["d"]


def test_n_minus_one_on_tones_is_exact() -> None:
    room = room_of("a", "b", "c")
    tones = zip("abc", (440, 660, 880), strict=True)
    gens = {m: ToneGenerator((f,), amplitude=5000) for m, f in tones}
    for _ in range(3):
        frames = {m: g.frame() for m, g in gens.items()}
        out = room.tick(frames).frames
        for me in "abc":
            others = [samples(frames[m]) for m in "abc" if m != me]
            assert samples(out[me]) == [x + y for x, y in zip(*others, strict=True)]


def test_silent_listeners_share_one_output_object() -> None:
    room = room_of("a", "b", "c")
    out = room.tick({"a": dc(10), "c": SILENCE}).frames  # digital silence adds nothing
    assert out["b"] is out["c"]
    assert samples(out["a"]) == [0] * FRAME_SAMPLES


def test_sums_saturate_instead_of_wrapping() -> None:
    room = room_of("a", "b", "c", "d")
    tick = room.tick({"a": dc(30000), "b": dc(30000), "c": dc(-2000)})
    assert samples(tick.frames["c"]) == [32767] * FRAME_SAMPLES
    assert samples(tick.frames["d"]) == [32767] * FRAME_SAMPLES
    assert samples(tick.frames["a"]) == [28000] * FRAME_SAMPLES
    low = room.tick({"a": dc(-30000), "b": dc(-30000)})
    assert samples(low.frames["c"]) == [-32768] * FRAME_SAMPLES


def test_limiter_scales_the_frame_instead_of_clipping_and_recovers() -> None:
    room = room_of("a", "b", "c", limiter=True)
    loud = [ToneGenerator((f,), amplitude=20000) for f in (440, 660)]
    frames = {"a": loud[0].frame(), "b": loud[1].frame()}
    heard = samples(room.tick(frames).frames["c"])
    true_sum = [x + y for x, y in zip(samples(frames["a"]), samples(frames["b"]), strict=True)]
    peak = max(abs(v) for v in true_sum)
    assert peak > 32767
    assert max(abs(v) for v in heard) <= 32768
    assert 32000 < max(abs(v) for v in heard)
    # The waveform keeps its shape (one gain for the frame), unlike a clipped one.
    for got, want in zip(heard, true_sum, strict=True):
        assert abs(got - want * 32767 / peak) <= 2.5
    quiet = [room.tick({"a": dc(1000)}).frames["c"] for _ in range(60)]
    assert samples(quiet[0])[0] < 1000
    assert samples(quiet[-1]) == [1000] * FRAME_SAMPLES


def test_muted_member_is_not_heard_but_hears() -> None:
    room = room_of("a", "b", "c")
    room.members["a"].muted = True
    out = room.tick({"a": dc(100), "b": dc(200), "c": dc(400)}).frames
    assert samples(out["b"]) == [400] * FRAME_SAMPLES
    assert samples(out["c"]) == [200] * FRAME_SAMPLES
    assert samples(out["a"]) == [600] * FRAME_SAMPLES
    room.members["a"].muted = False
    assert samples(room.tick({"a": dc(100)}).frames["b"]) == [100] * FRAME_SAMPLES


def test_deaf_member_hears_silence_but_is_heard() -> None:
    room = room_of("a", "b")
    room.members["a"].deaf = True
    out = room.tick({"a": dc(100), "b": dc(200)}).frames
    assert out["a"] == SILENCE
    assert samples(out["b"]) == [100] * FRAME_SAMPLES


def test_gain_changes_what_others_hear_of_a_member() -> None:
    room = room_of("a", "b", "c")
    room.members["a"].gain_db = -6.0
    room.members["b"].gain_db = 6.0
    out = room.tick({"a": dc(1000), "b": dc(1000)}).frames
    assert samples(out["c"])[0] == 501 + 1995
    assert samples(out["b"])[0] == 501
    assert samples(out["a"])[0] == 1995
    for bad in (GAIN_MIN_DB - 1, GAIN_MAX_DB + 1):
        with pytest.raises(ValueError, match="gain"):
            room.members["a"].gain_db = bad
    with pytest.raises(ValueError, match="gain"):
        room.join("d", gain_db=40.0)


def test_whisper_is_heard_by_its_target_only() -> None:
    room = room_of("agent", "caller")
    room.join("supervisor", whisper_to="agent")
    out = room.tick({"agent": dc(100), "caller": dc(200), "supervisor": dc(400)})
    assert samples(out.frames["agent"]) == [600] * FRAME_SAMPLES
    assert samples(out.frames["caller"]) == [100] * FRAME_SAMPLES
    assert samples(out.frames["supervisor"]) == [300] * FRAME_SAMPLES
    assert samples(out.mix) == [300] * FRAME_SAMPLES
    room.members["supervisor"].whisper_to = None  # barge: everyone hears the supervisor
    out = room.tick({"supervisor": dc(400)})
    assert samples(out.frames["caller"]) == [400] * FRAME_SAMPLES
    with pytest.raises(ValueError, match="itself"):
        room.members["agent"].whisper_to = "agent"


def test_whisper_to_an_absent_member_is_heard_by_nobody() -> None:
    room = room_of("a", "b")
    room.join("s", whisper_to="gone")
    out = room.tick({"s": dc(400)}).frames
    assert out["a"] == SILENCE
    assert out["b"] == SILENCE


def test_missing_frames_are_silence_and_members_come_and_go() -> None:
    room = room_of("a", "b")
    out = room.tick({"a": dc(100), "b": dc(200)}).frames
    assert samples(out["a"]) == [200] * FRAME_SAMPLES
    out = room.tick({"a": dc(100)}).frames  # b's RTP stopped
    assert out["a"] == SILENCE
    assert samples(out["b"]) == [100] * FRAME_SAMPLES
    room.join("c")
    out = room.tick({"a": dc(100), "c": dc(50), "stranger": dc(9999)}).frames
    assert set(out) == {"a", "b", "c"}
    assert samples(out["b"]) == [150] * FRAME_SAMPLES
    room.leave("a")
    out = room.tick({"a": dc(100), "c": dc(50)}).frames
    assert set(out) == {"b", "c"}
    assert samples(out["b"]) == [50] * FRAME_SAMPLES
    with pytest.raises(ValueError, match="already"):
        room.join("b")


def test_frames_of_the_wrong_length_are_refused() -> None:
    room = room_of("a")
    with pytest.raises(ValueError, match="octets"):
        room.tick({"a": bytes(160)})


def test_level_in_dbov() -> None:
    assert level_dbov(None) == FLOOR_DBOV
    assert level_dbov(array("h", [0] * 160)) == FLOOR_DBOV
    assert level_dbov(array("h", [-32768] * 160)) == pytest.approx(0.0)
    sine = array("h", ToneGenerator((1000.0,), amplitude=32767).frame())
    assert level_dbov(sine) == pytest.approx(-3.01, abs=0.05)


def test_vad_turns_on_and_off_with_hysteresis() -> None:
    vad = VoiceActivity(on_dbov=-40.0, off_dbov=-50.0, on_frames=2, off_frames=3)
    loud = array("h", [1000] * 160)  # about -30 dBov
    between = array("h", [150] * 160)  # about -46.8 dBov
    quiet = array("h", [10] * 160)  # about -70 dBov
    assert vad.update(loud) is None  # one frame is not enough
    assert vad.update(quiet) is None
    assert vad.update(loud) is None
    assert vad.update(loud) is True
    assert vad.update(between) is None  # above the off threshold: still talking
    assert vad.update(quiet) is None
    assert vad.update(quiet) is None
    assert vad.update(between) is None  # breaks the quiet run
    assert vad.update(quiet) is None
    assert vad.update(None) is None
    assert vad.update(quiet) is False
    assert vad.update(between) is None  # below the on threshold: stays quiet
    assert vad.update(between) is None
    assert not vad.talking
    with pytest.raises(ValueError, match="off_dbov"):
        VoiceActivity(on_dbov=-50.0, off_dbov=-40.0)


def test_tick_reports_talking_transitions() -> None:
    room = room_of("a", "b")
    room.members["a"].muted = True  # a muted member's talking is still reported
    first = room.tick({"a": dc(1000)})
    assert first.talking == ()
    second = room.tick({"a": dc(1000)})
    assert len(second.talking) == 1
    change = second.talking[0]
    assert isinstance(change, TalkingChanged)
    assert (change.member, change.talking) == ("a", True)
    assert change.level_dbov == pytest.approx(20 * math.log10(1000 / 32768))
    changes = [room.tick({}).talking for _ in range(15)]
    assert changes[:14] == [()] * 14
    assert changes[14] == (TalkingChanged("a", False, FLOOR_DBOV),)


def test_source_to_the_room_is_heard_by_all_and_recorded() -> None:
    room = room_of("a", "b", "deaf")
    room.members["deaf"].deaf = True
    room.play("prompt", Player("e1", frames=[dc(300), dc(300)]))
    assert room.sources == {"prompt": None}
    tick = room.tick({"a": dc(100)})
    assert samples(tick.frames["a"]) == [300] * FRAME_SAMPLES
    assert samples(tick.frames["b"]) == [400] * FRAME_SAMPLES
    assert samples(tick.mix) == [400] * FRAME_SAMPLES
    assert tick.frames["deaf"] == SILENCE
    assert room.tick({}).finished == ()
    done = room.tick({})
    assert done.finished == (SourceFinished("prompt", None),)
    assert done.mix == SILENCE
    assert room.sources == {}


def test_source_to_one_member_is_heard_by_it_only() -> None:
    room = room_of("a", "b", "c")
    room.members["c"].deaf = True
    room.play("beep", Player(None, frames=[dc(300)] * 5), to="a")
    room.play("hold", Player(None, frames=[dc(7)] * 5), to="c")
    tick = room.tick({"b": dc(100)})
    assert samples(tick.frames["a"]) == [400] * FRAME_SAMPLES
    assert samples(tick.frames["b"]) == [0] * FRAME_SAMPLES
    assert samples(tick.mix) == [100] * FRAME_SAMPLES
    assert samples(tick.frames["c"]) == [7] * FRAME_SAMPLES  # asked for, so heard while deaf
    room.leave("a")
    assert room.tick({}).finished == (SourceFinished("beep", "a"),)
    assert room.stop("hold")
    assert not room.stop("hold")
    with pytest.raises(KeyError):
        room.play("x", Player(None, frames=[dc(1)]), to="nobody")


def test_bench_mixer_reports_capacity() -> None:
    result = bench_mixer(members=5, rooms=2, seconds=0.1, talkers=2, g711_edges=True)
    assert result["rooms_per_core"] > 0
    assert result["realtime_members"] == pytest.approx(result["rooms_per_core"] * 5)
