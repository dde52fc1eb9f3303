"""`warmwhisk_sim.calibration` and `mapping`: the calibration read from the file given (every figure
the simulation uses comes from it), broken files rejected with the file and the field; the
documented mapping of trace functions to model actions; a whole run of several functions
deterministic for a seed and conserving every arrival."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_sim_traces import TRACE
from warmwhisk_sim.calibration import DEFAULT, CalibrationError, load_calibration
from warmwhisk_sim.cluster import TIGHT, build_run, host_model, run_variant
from warmwhisk_sim.mapping import MappingRules, activations, map_functions, objective_s, terciles
from warmwhisk_sim.metrics import run_metrics
from warmwhisk_sim.traces import read_azure_trace
from warmwhisk_sim.variants import HYBRID, OPENWHISK, by_name


def calibration_file(tmp_path: Path, change: Any = None) -> Path:
    data = json.loads(DEFAULT.read_text())
    if change is not None:
        change(data)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(data))
    return path


# --- calibration ---------------------------------------------------------------------------------


def test_every_figure_comes_from_the_file_given(tmp_path: Path) -> None:
    def slower(data: dict[str, Any]) -> None:
        for point in data["host_start"]["points"]:
            point["cold_start_s"] *= 10
        data["routed"]["start_s"]["value"] = 1.5

    base = load_calibration(DEFAULT)
    changed = load_calibration(calibration_file(tmp_path, slower))
    assert changed.path == str(tmp_path / "calibration.json")
    for size in (1.0, 100.0, 300.0):
        assert changed.cold_start_s(size, stock=False) == pytest.approx(
            10 * base.cold_start_s(size, stock=False)
        )
        assert changed.cold_start_s(size, stock=True) == base.cold_start_s(size, stock=True)
    assert changed.routed_start_s.value == 1.5
    action = map_functions(read_azure_trace(TRACE)[:1], changed)[0]
    host, routed = host_model(action, HYBRID, changed, MappingRules())
    assert host.cold_start_s == pytest.approx(
        10 * host_model(action, HYBRID, base, MappingRules())[0].cold_start_s
    )
    assert routed is not None and routed.start_s == 1.5
    # Every figure is listed with where it came from.
    assert all(source for _, _, source in changed.describe())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("routed"), "routed"),
        (lambda d: d["host_start"]["points"][0].pop("cold_start_s"), "host_start.points[0].cold_start_s"),
        (lambda d: d["host_start"]["points"][1].update(memory_mb=-3), "host_start.points[1].memory_mb"),
        (lambda d: d["batch_delay_s"].update(value="5 ms"), "batch_delay_s.value"),
        (lambda d: d.update(format="something-else/9"), "format"),
    ],
)
def test_a_broken_calibration_is_rejected_with_the_file_and_the_field(
    tmp_path: Path, change: Any, field: str
) -> None:
    path = calibration_file(tmp_path, change)
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_a_calibration_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match=r"calibration\.json"):
        load_calibration(path)


# --- mapping ---------------------------------------------------------------------------------------


def test_the_documented_mapping() -> None:
    functions = read_azure_trace(TRACE)
    actions = map_functions(functions, load_calibration())
    assert terciles(7) == ["hot"] * 3 + ["warm"] * 2 + ["rare"] * 2
    assert [a.tercile for a in actions].count("hot") == 24 and actions[0].rank == 1
    for a in actions:
        assert a.batchable == (a.fn.trigger in {"http", "queue", "event"})
        assert a.model_mb == pytest.approx(max(0.01, a.fn.memory_at(0.99)))
        assert a.timeout_s == pytest.approx(max(60.0, 2 * a.fn.duration_percentiles[-1]))
        assert a.hybrid_objective_s == pytest.approx(max(1.0, 2 * a.fn.duration_percentiles[5]))
    assert objective_s(np.array([0.1, 3.0])).tolist() == pytest.approx([1.1, 6.0])


def test_a_functions_activations_depend_on_the_seed_and_its_own_hash_only() -> None:
    functions = read_azure_trace(TRACE)
    fn = functions[5]
    t1, d1 = activations(fn, seed=4, minutes=60)
    t2, d2 = activations(fn, seed=4, minutes=60)
    assert np.array_equal(t1, t2) and np.array_equal(d1, d2)
    assert t1.size == sum(fn.per_minute[:60]) and np.all(np.diff(t1) >= 0)
    minutes = np.floor(t1 / 60).astype(int)
    assert np.bincount(minutes, minlength=60).tolist() == list(fn.per_minute[:60])
    t3, _ = activations(fn, seed=5, minutes=60)
    assert not np.array_equal(t1, t3)
    # The same function in another subset of the trace gets the same activations.
    run = build_run(functions[3:9], load_calibration(), seed=4, minutes=60)
    assert np.array_equal(run.arrivals[2], t1)


# --- a whole run -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hybrid", "openwhisk", "kpa", "rayserve"])
def test_a_run_of_the_trace_is_deterministic_for_a_seed_and_serves_or_drops_every_arrival(name: str) -> None:
    functions = read_azure_trace(TRACE)[:12]
    variant = by_name(name)[0]
    runs = [build_run(functions, load_calibration(), seed=seed, minutes=45) for seed in (1, 1, 2)]
    metrics = [run_metrics(run, run_variant(run, variant, TIGHT.cluster)) for run in runs]
    assert metrics[0] == metrics[1]
    assert (
        metrics[0]["p99_s"] != metrics[2]["p99_s"] or metrics[0]["memory_gb_s"] != metrics[2]["memory_gb_s"]
    )
    m = metrics[0]
    assert m["invocations"] == runs[0].invocations
    assert m["completed"] + m["dropped"] == m["invocations"]
    assert sum(t["invocations"] for t in m["terciles"].values()) == m["invocations"]


def test_hybrid_and_openwhisk_differ_in_runtime_as_documented() -> None:
    run = build_run(read_azure_trace(TRACE)[:2], load_calibration(), minutes=5)
    action = run.actions[0]
    hybrid, routed = host_model(action, HYBRID, run.calibration, run.rules)
    stock, none = host_model(action, OPENWHISK, run.calibration, run.rules)
    assert routed is not None and none is None
    assert hybrid.shared_mb > 0 and stock.shared_mb == 0 and hybrid.model and not stock.model
