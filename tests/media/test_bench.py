"""The relay benchmark runs and reports positive rates (no timing assertions)."""

from __future__ import annotations

from sessiond.media.bench import bench_relay


def test_bench_relay_reports_rates() -> None:
    result = bench_relay(0.3)
    assert set(result) == {
        "relay_pps",
        "jitter_pps",
        "transcode_pps",
        "packet_octets",
        "jitter_missing",
    }
    assert result["relay_pps"] > 1000
    assert result["jitter_pps"] > 1000
    assert result["transcode_pps"] > 1000
    assert result["packet_octets"] == 172
    assert result["jitter_missing"] == 0


def test_bench_conference_mixes_rooms_over_real_sockets() -> None:
    """Two rooms of three members for a second: every member gets mixed packets back."""
    import asyncio

    from sessiond.cli.bench import conference, far_end

    with far_end.sender() as (conn, far):
        step = asyncio.run(conference._step(2, 3, 2, 1.0, conn, far))
    assert step.legs == 6
    assert step.ticks > 0
    assert step.sent > 0
    assert step.received > 0
