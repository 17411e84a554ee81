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
