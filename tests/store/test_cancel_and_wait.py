"""``cancel_and_wait`` ends a task that lost its first cancellation (as Python 3.11's
``wait_for`` can drop one inside fakeredis' reads; ``sessiond run`` then hung on SIGTERM)."""

from __future__ import annotations

import asyncio

import pytest

from sessiond.store.streams import cancel_and_wait


async def test_a_swallowed_cancellation_is_asked_again() -> None:
    forever = asyncio.Event()
    swallowed = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await forever.wait()
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # lost, the way a racing wait_for loses it

    async def fails() -> None:
        raise ValueError("collected, not logged as never retrieved")

    task = asyncio.create_task(loop())
    failing = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task, failing]), 10)
    assert swallowed.is_set()
    assert task.cancelled()
    assert isinstance(failing.exception(), ValueError)


async def test_the_callers_own_cancellation_propagates() -> None:
    stubborn = True
    never = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await never.wait()
            except asyncio.CancelledError:
                if not stubborn:
                    raise

    task = asyncio.create_task(loop())
    waiter = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not task.done()
    stubborn = False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
