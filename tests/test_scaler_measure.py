"""The one Observation builder (measure.py): windows, rates, percentiles."""

from __future__ import annotations

import pytest

from warmwhisk_scaler.measure import PoolWindow, measure, nearest_rank, new_run_times
from warmwhisk_scaler.policy import HostView


def test_new_run_times_take_only_the_completions_since_the_last_reading() -> None:
    recent = (0.5, 0.4, 0.3, 0.2, 0.1)  # ms, newest first
    first = new_run_times(recent, timed_now=5, timed_before=None)
    assert first == pytest.approx([5e-4, 4e-4, 3e-4, 2e-4, 1e-4])
    assert new_run_times(recent, timed_now=7, timed_before=5) == pytest.approx([5e-4, 4e-4])
    assert new_run_times(recent, timed_now=7, timed_before=7) == []
    assert len(new_run_times(recent, timed_now=2, timed_before=9)) == 5  # counters went back


def test_rates_cover_the_whole_window_and_latencies_only_its_runs() -> None:
    window = PoolWindow(window_s=10.0)
    window.record(0.0, acquired=0, completed=0, queued=0, new_run_times=[9.0])  # old, slow runs
    window.record(5.0, acquired=30, completed=20, queued=10, new_run_times=[0.1] * 20)
    obs = measure("p", 5.0, [], 10, window, cold_start_s=2.0)
    # 30 got a slot and 10 more wait: 40 arrived, over the 10 s window (not the 5 s of history).
    assert obs.arrivals_per_s == pytest.approx(4.0)
    assert obs.completions_per_s == pytest.approx(4.0)  # 20 in 5 s
    assert obs.latency_p99_s == 9.0  # the slow run is still in the window
    window.record(12.0, acquired=30, completed=20, queued=10, new_run_times=[])
    obs = measure("p", 12.0, [], 10, window, cold_start_s=2.0)
    assert obs.latency_p50_s == pytest.approx(0.1) and obs.latency_p99_s == pytest.approx(0.1)
    window.record(30.0, acquired=30, completed=20, queued=0, new_run_times=[])
    obs = measure("p", 30.0, [], 0, window, cold_start_s=2.0)
    assert obs.latency_p50_s is None and obs.latency_p99_s is None  # nothing ran in the window
    assert obs.service_time_s == pytest.approx((9.0 + 20 * 0.1) / 21)  # recent runs, window or not


def test_hosts_are_sorted_and_the_cold_start_passed_through() -> None:
    window = PoolWindow(window_s=10.0)
    window.record(1.0, 0, 0, 0, [])
    hosts = [HostView("b", "warm", 1, 2, 0.0, 1.0), HostView("a", "starting", 0, 2, 0.5, 0.5)]
    obs = measure("p", 1.0, hosts, 0, window, cold_start_s=None)
    assert [h.host_id for h in obs.hosts] == ["a", "b"] and obs.arrivals_per_s == 0.0
    assert obs.cold_start_s is None


def test_nearest_rank() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 3.0
    assert nearest_rank([float(i) for i in range(100)], 0.99) == 99.0
