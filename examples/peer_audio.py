"""Alice calls Bob over real SIP and RTP on 127.0.0.1; both send a tone; both save WAV files.

    python examples/peer_audio.py [--out DIR] [--alice-port 5070] [--bob-port 5071]

Alice sends 440 Hz and Bob 880 Hz for ``--seconds`` (3 s) through ``send_audio``; each saves
what it sent and what it received (``alice_sent.wav``, ``alice_received.wav``, ``bob_...``,
8 kHz mono PCM16). Alice hangs up. Both peers run in this process, each with its own edge,
worker and media node on the embedded store: nothing else to install.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import wave
from array import array
from pathlib import Path

from sessiond import Call, CallEnded, SimplePeer

RATE, FRAME = 8000, 160  # 20 ms frames of PCM16 mono


def tone_frames(hz: float, seconds: float, amplitude: int = 8000) -> list[bytes]:
    """``seconds`` of a sine at ``hz`` as 20 ms frames."""
    step = 2 * math.pi * hz / RATE
    n_frames = int(seconds * RATE / FRAME)
    return [
        array(
            "h", (int(amplitude * math.sin(step * (k * FRAME + i))) for i in range(FRAME))
        ).tobytes()
        for k in range(n_frames)
    ]


def save_wav(path: Path, frames: list[bytes]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(frames))


async def talk(call: Call, hz: float, seconds: float) -> tuple[list[bytes], list[bytes]]:
    """Send a tone and, at the same time, collect what arrives; (sent, received) frames."""
    sent = tone_frames(hz, seconds)
    received: list[bytes] = []

    async def send() -> None:
        for frame in sent:
            await call.send_audio(frame)

    async def receive() -> None:
        with contextlib.suppress(CallEnded):  # the other side may hang up first
            for _ in range(len(sent) + 25):  # the tone, plus 0.5 s for the far end's delay
                received.append(await call.recv_audio())

    await asyncio.gather(send(), receive())
    return sent, received


async def main(out: Path, alice_port: int, bob_port: int, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    async with (
        SimplePeer("alice", alice_port, rtp_ports="21000-21099") as alice,
        SimplePeer("bob", bob_port, rtp_ports="21100-21199") as bob,
    ):

        async def bob_side() -> tuple[list[bytes], list[bytes]]:
            incoming = await bob.incoming_call(timeout=10)
            call = await incoming.accept()
            result = await talk(call, 880.0, seconds)
            await call.wait_ended(timeout=10)
            return result

        bob_task = asyncio.create_task(bob_side())
        call = await alice.call(f"sip:bob@127.0.0.1:{bob_port}", timeout=10)
        alice_sent, alice_received = await talk(call, 440.0, seconds)
        await call.hangup()
        bob_sent, bob_received = await bob_task
    for name, frames in (
        ("alice_sent", alice_sent),
        ("alice_received", alice_received),
        ("bob_sent", bob_sent),
        ("bob_received", bob_received),
    ):
        save_wav(out / f"{name}.wav", frames)
        print(f"{out / name}.wav: {len(frames) * FRAME / RATE:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("peer_audio_out"))
    parser.add_argument("--alice-port", type=int, default=5070)
    parser.add_argument("--bob-port", type=int, default=5071)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(args.out, args.alice_port, args.bob_port, args.seconds))
