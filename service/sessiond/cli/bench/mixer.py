"""CPU cost of conference mixing: how many rooms x members one core mixes in real time.

:func:`bench_mixer` builds ``rooms`` rooms of ``members`` members, feeds every member a tone
(``talkers`` of them per room; the others send digital silence, as a muted or quiet phone does
after decoding) and times :meth:`~sessiond.media.mixer.Room.tick`. With ``g711=True`` each tick
also decodes one PCMU payload per member and encodes each distinct output once, which is what the
media node will add around the mixer. No sockets, no timing assertions: a figure to report.

One room tick must finish within 20 ms of one core for the room to be mixed in real time, so
``realtime_members = members * rooms_per_core`` where ``rooms_per_core = 0.02 / tick_seconds``.
"""

from __future__ import annotations

import time

from sessiond.media import g711
from sessiond.media.codecs import FRAME_MS, SILENCE
from sessiond.media.mixer import Room
from sessiond.media.tones import ToneGenerator

_FRAMES = 50  # one second of distinct input frames, cycled


def _inputs(members: int, talkers: int) -> list[dict[str, bytes]]:
    gens = [ToneGenerator((300.0 + 110.0 * i,), amplitude=6000) for i in range(talkers)]
    ticks: list[dict[str, bytes]] = []
    for _ in range(_FRAMES):
        frames = {f"m{i}": SILENCE for i in range(members)}
        for i, gen in enumerate(gens):
            frames[f"m{i}"] = gen.frame()
        ticks.append(frames)
    return ticks


def bench_mixer(
    members: int = 10,
    rooms: int = 4,
    seconds: float = 1.0,
    *,
    talkers: int | None = None,
    g711_edges: bool = False,
) -> dict[str, float]:
    """Mix ``rooms`` rooms for about ``seconds`` of CPU; returns rates and real-time capacity."""
    talkers = members if talkers is None else min(talkers, members)
    inputs = _inputs(members, talkers)
    payloads = [{m: g711.ulaw_encode(f) for m, f in tick.items()} for tick in inputs]
    all_rooms = []
    for _ in range(rooms):
        room = Room()
        for i in range(members):
            room.join(f"m{i}")
        all_rooms.append(room)
    ticks = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for n in range(_FRAMES):
            for room in all_rooms:
                if g711_edges:
                    frames = {m: g711.ulaw_decode(p) for m, p in payloads[n].items()}
                    out = room.tick(frames).frames
                    encoded: dict[int, bytes] = {}
                    for frame in out.values():
                        if id(frame) not in encoded:
                            encoded[id(frame)] = g711.ulaw_encode(frame)
                else:
                    room.tick(inputs[n])
            ticks += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    tick_seconds = elapsed / (ticks * rooms)  # one room, one tick
    rooms_per_core = FRAME_MS / 1000 / tick_seconds
    return {
        "members": float(members),
        "talkers": float(talkers),
        "room_tick_us": tick_seconds * 1e6,
        "member_tick_us": tick_seconds * 1e6 / members,
        "rooms_per_core": rooms_per_core,
        "realtime_members": rooms_per_core * members,
        "cpu_per_member_pct": 100.0 / (rooms_per_core * members),
    }


# (members, talkers) of the rooms ``sessiond bench mixer`` measures
CASES = ((3, 3), (5, 5), (10, 2), (10, 10), (20, 3), (50, 3))


def main(seconds: float) -> int:
    """``sessiond bench mixer``: one core's real-time capacity, mixing alone and with G.711
    decoded and encoded at both ends, for rooms of a few sizes."""
    per_case = max(0.2, seconds / (2 * len(CASES)))
    print(
        f"{'members x talkers':>18} {'room tick us':>13} {'members/core':>13} "
        f"{'with G.711 us':>14} {'members/core':>13}"
    )
    for members, talkers in CASES:
        mix = bench_mixer(members, 4, per_case, talkers=talkers)
        g711 = bench_mixer(members, 4, per_case, talkers=talkers, g711_edges=True)
        print(
            f"{members:>8} x {talkers:<7} {mix['room_tick_us']:>13.0f} "
            f"{mix['realtime_members']:>13.0f} {g711['room_tick_us']:>14.0f} "
            f"{g711['realtime_members']:>13.0f}"
        )
    return 0
