"""A tiny IVR: answer, play a prompt, collect DTMF digits until '#' or N digits, hang up.

    python examples/ivr.py [--port 5080] [--digits 4] [--calls 1] [--redis URL] [--demo]

It listens on udp 127.0.0.1:PORT as a SimplePeer (embedded store, or ``--redis``). For each
call it writes a short prompt WAV (two beeps, 8 kHz mono PCM16), plays it, collects digits
(RFC 4733) until '#' or ``--digits`` digits or ``--timeout`` seconds without one, prints
``digits: 1234`` and hangs up. After ``--calls`` calls it exits. ``--demo`` also starts a
caller in this process that dials the IVR and keys ``42#``: one command shows everything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import tempfile
import wave
from array import array
from pathlib import Path

from sessiond import Call, DtmfReceived, Invitation, SimplePeer

RATE = 8000


def write_prompt(path: Path) -> Path:
    """Two 200 ms beeps at 660 Hz with a 100 ms gap, as a WAV file."""
    samples = array("h")
    for beep in range(2):
        samples.extend(int(6000 * math.sin(2 * math.pi * 660 * i / RATE)) for i in range(1600))
        if beep == 0:
            samples.extend([0] * 800)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


async def collect_digits(call: Call, max_digits: int, timeout: float) -> str:
    """DTMF digits until '#' (not included), ``max_digits`` digits, or ``timeout`` s of none."""
    digits = ""
    while len(digits) < max_digits:
        try:
            event = await call.wait_for(DtmfReceived, timeout=timeout)
        except TimeoutError:
            break
        assert isinstance(event, DtmfReceived)
        if event.digit == "#":
            break
        digits += event.digit
    return digits


async def serve_call(invitation: Invitation, prompt: Path, max_digits: int, timeout: float) -> str:
    """Answer one call, prompt, collect, hang up; the digits."""
    call = await invitation.accept()
    await call.play(wav=prompt)
    digits = await collect_digits(call, max_digits, timeout)
    print(f"digits: {digits}", flush=True)
    await call.hangup()
    return digits


async def demo_caller(target: str, port: int, keys: str) -> None:
    """Call the IVR, wait for the prompt, key ``keys``, wait for the IVR to hang up."""
    async with SimplePeer("caller", port=port, rtp_ports="21000-21099") as caller:
        call = await caller.call(target)
        await asyncio.sleep(0.8)  # the prompt
        await call.send_dtmf(keys)
        await call.wait_ended(15)


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        prompt = write_prompt(Path(tmp) / "prompt.wav")
        async with SimplePeer(
            "ivr", port=args.port, redis_url=args.redis, rtp_ports="20000-20099"
        ) as ivr:
            print(f"IVR listening on {ivr.uri}", flush=True)
            demo = (
                asyncio.create_task(demo_caller(ivr.uri, args.port + 1, "42#"))
                if args.demo
                else None
            )
            for _ in range(args.calls):
                invitation = await ivr.incoming_call()
                await serve_call(invitation, prompt, args.digits, args.timeout)
            if demo is not None:
                await demo
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5080, help="SIP port on 127.0.0.1")
    parser.add_argument("--digits", type=int, default=4, help="stop after this many digits")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait a digit")
    parser.add_argument("--calls", type=int, default=1, help="calls to serve, then exit")
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded store)")
    parser.add_argument("--demo", action="store_true", help="also place a call that keys 42#")
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(asyncio.run(main(parse_args())))
