"""The replay simulator: exact on tiny workloads, deterministic, conserving; and the comparison the
hybrid policy exists for (fewer containers and memory than stock OpenWhisk on a burst)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from warmwhisk_scaler.policy import POLICIES, HybridConfig
from warmwhisk_sim.__main__ import format_table, main
from warmwhisk_sim.replay import HostModel, ReplaySettings, compare, replay
from warmwhisk_sim.traces import find_function, read_azure_trace, trace_workload
from warmwhisk_sim.workloads import Workload, burst_and_ramp

TRACE = Path(__file__).resolve().parents[1] / "simulator" / "traces" / "azure2019"


def workload(*pairs: tuple[float, float], horizon_s: float = 10.0) -> Workload:
    return Workload("tiny", tuple(a for a, _ in pairs), tuple(d for _, d in pairs), horizon_s)


# --- exact small cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_one_activation_at_zero_hosts_waits_exactly_one_cold_start(name: str) -> None:
    r = replay(workload((1.0, 0.5)), name, host=HostModel(cold_start_s=2.0, memory_mb=1024.0))
    assert (r.activations, r.completed) == (1, 1)
    # Ray Serve starts its min_replicas=1 at t=0 (warm at t=2), the others start a host on demand.
    expected = 1.5 if name == "rayserve" else 2.5
    assert r.latency_p50_s == pytest.approx(expected)
    assert r.cold_starts == 1 and r.peak_hosts == 1


def test_processor_sharing_two_runs_on_one_core_take_twice_as_long() -> None:
    two = workload((0.0, 1.0), (0.0, 1.0))
    config = HybridConfig(initial_limit=2)
    one_core = replay(two, "hybrid", config, host=HostModel(cold_start_s=2.0, cores=1.0))
    two_cores = replay(two, "hybrid", config, host=HostModel(cold_start_s=2.0, cores=2.0))
    # One host (limit 2) warm at t=2 runs both: sharing 1 core they end at t=4, with 2 at t=3.
    assert one_core.cold_starts == two_cores.cold_starts == 1
    assert one_core.latency_p99_s == pytest.approx(4.0)
    assert two_cores.latency_p99_s == pytest.approx(3.0)


def test_a_measured_throughput_curve_replaces_the_cores_model() -> None:
    model = HostModel(throughput_curve=(1.0, 1.5))
    assert model.speed(1) == 1.0
    assert model.speed(2) == pytest.approx(0.75)
    assert model.speed(4) == pytest.approx(1.5 / 4)  # flat beyond the curve
    assert HostModel(cores=2.0).speed(4) == pytest.approx(0.5)


def test_memory_seconds_count_every_host_from_start_to_removal_or_the_end() -> None:
    # OpenWhisk: one activation at t=0 → one container from t=0 to the horizon (idle < 600 s).
    r = replay(workload((0.0, 1.0), horizon_s=100.0), "openwhisk", host=HostModel(memory_mb=2048.0))
    assert r.host_s == pytest.approx(100.0)
    assert r.memory_gb_s == pytest.approx(200.0)


def test_workload_rejects_unsorted_arrivals_and_bad_durations() -> None:
    with pytest.raises(ValueError):
        workload((2.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError):
        workload((1.0, 0.0))


# --- determinism and conservation ----------------------------------------------------------------


def test_workloads_and_replays_are_deterministic_for_a_seed() -> None:
    assert burst_and_ramp(7) == burst_and_ramp(7)
    assert burst_and_ramp(7).arrivals != burst_and_ramp(8).arrivals
    w = burst_and_ramp(3, horizon_s=400.0, hold_end_s=380.0, ramp_end_s=360.0)
    for name in POLICIES:
        assert replay(w, name) == replay(w, name)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_arrival_completes_and_takes_at_least_its_run_time(name: str) -> None:
    w = burst_and_ramp(1, horizon_s=400.0, hold_end_s=380.0, ramp_end_s=360.0)
    r = replay(w, name)
    assert r.activations == len(w.arrivals) > 1000
    assert r.completed == r.activations
    assert r.latency_p50_s >= min(w.durations)
    assert 0 <= r.violation_pct <= 100 and r.peak_hosts >= 1


# --- the comparison ------------------------------------------------------------------------------


def test_burst_and_ramp_hybrid_uses_fewer_containers_and_memory_than_openwhisk_at_comparable_p99(
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = HostModel(cold_start_s=2.0, memory_mb=1024.0, cores=2.0)
    settings = ReplaySettings(latency_objective_s=0.5)
    results = compare(burst_and_ramp(0), host=host, settings=settings)
    with capsys.disabled():
        print("\n" + format_table(results))
    by = {r.policy: r for r in results}
    hybrid, ow = by["hybrid"], by["openwhisk"]
    assert all(r.completed == r.activations for r in results)
    assert hybrid.cold_starts < ow.cold_starts / 5
    assert hybrid.memory_gb_s < ow.memory_gb_s / 5
    # Comparable p99: within one cold start of OpenWhisk's (which keeps every container of the
    # burst warm for 10 minutes), and about as many activations over the objective.
    assert hybrid.latency_p99_s <= ow.latency_p99_s + host.cold_start_s
    assert hybrid.violation_pct <= ow.violation_pct + 1.0


# --- the Azure trace -----------------------------------------------------------------------------


def test_trace_loader_spreads_each_minutes_count_within_that_minute() -> None:
    functions = read_azure_trace(TRACE)
    assert len(functions) == 70
    assert functions[0].total >= functions[1].total  # busiest first
    fn = find_function(functions, "top3")
    assert find_function(functions, fn.hash_function[:10]) is fn
    w = trace_workload([fn], start_minute=5, minutes=10, seed=1)
    assert len(w.arrivals) == sum(fn.per_minute[5:15])
    for m in range(10):
        in_minute = sum(1 for t in w.arrivals if m * 60.0 <= t < (m + 1) * 60.0)
        assert in_minute == fn.per_minute[5 + m]
    lo, hi = fn.duration_percentiles[0], fn.duration_percentiles[-1]
    assert all(max(lo, 0.001) <= d <= hi for d in w.durations)
    assert w == trace_workload([fn], start_minute=5, minutes=10, seed=1)
    assert w.horizon_s == 600.0 and w.memory_mb == fn.memory_mb
    with pytest.raises(KeyError):
        find_function(functions, "top71")


def test_several_functions_merge_into_one_pool() -> None:
    functions = read_azure_trace(TRACE)
    a, b = find_function(functions, "top2"), find_function(functions, "top3")
    w = trace_workload([a, b], minutes=5)
    assert len(w.arrivals) == sum(a.per_minute[:5]) + sum(b.per_minute[:5])
    assert list(w.arrivals) == sorted(w.arrivals)
    assert w.memory_mb == pytest.approx(a.memory_mb + b.memory_mb)


def test_cli_prints_a_table_and_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(TRACE), "--function", "top3", "--minutes", "20"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[1].split()[0] == "policy" and len(out) == 2 + len(POLICIES) + 1
    summary = json.loads(out[-1])
    assert set(summary["results"]) == set(POLICIES)
    for result in summary["results"].values():
        assert result["completed"] == result["activations"]
        assert not math.isnan(result["latency_p99_s"])
    assert summary["host"]["cold_start_s"] == 2.0 and summary["host"]["cores"] == 2.0
