"""Measurements of the real runtime that the trace simulation is calibrated with, read from a file.

`bench/trace/calibrate.py` measures them on a machine and writes the file
(``make bench-trace CALIBRATE=1``); `default_calibration.json` beside this module holds the ones
measured on this project's 2-core machine. Every figure carries its ``source``: what was run and
how it was read. The file holds measurements only; what the simulation needs is derived here:

* **Cold start** of a model host of a model of s MB: a least-squares line through the hosts
  measured (``host_start``: the scaler starts a warmwhisk model host, start → warm in the
  registry; weights memory-mapped) or the stock containers measured (``stock_start``: docker run
  → /init, which imports torch and loads a private copy of the weights → first answer).
* **Memory** of one host (PSS of all its processes, serving): a line through the same points.
  For warmwhisk hosts the weights are a read-only mapping of the node's page cache: the resident
  part (``weights_resident_mb`` / size) is held once per node and model, the rest is the host's own.
* **Forward** of a model at batch b and with c concurrent single requests (``forward``): the
  relative throughput curves of a host with and without micro-batching.
* **Routed mode**: the routed container's extra latency per activation, its cold start, its memory,
  and a trivial activation's whole path (client → routed container → host → answer).
* **Image pages** (``image_shared_mb``): what the containers of one runtime image on a node share
  (the libraries' file pages): the first container's PSS less what each further one adds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "warmwhisk-calibration/1"
DEFAULT = Path(__file__).resolve().parent / "default_calibration.json"


class CalibrationError(ValueError):
    """A calibration file that does not hold what the simulation needs: the file and the field."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        self.path, self.field = path, field
        super().__init__(f"{path}: {field}: {message}")


@dataclass(frozen=True)
class Measured:
    value: float
    source: str


@dataclass(frozen=True)
class LoadPoint:
    """One model measured with one way of loading it."""

    model: str
    size_mb: float
    # Start of the container or host → it serves (s).
    cold_start_s: float
    # PSS of all its processes after serving one activation (MB).
    memory_mb: float
    # Resident bytes of its mapping of the weights file (MB); None when weights are a private copy.
    weights_resident_mb: float | None = None


@dataclass(frozen=True)
class ForwardCurve:
    """One model's forward in-process on this machine."""

    model: str
    size_mb: float
    # Forward time at each batch size (s).
    batch_s: Mapping[int, float]
    # Requests per second with c threads each forwarding one request.
    concurrent_rps: Mapping[int, float]

    @property
    def single_s(self) -> float:
        return self.batch_s[min(self.batch_s)]

    def batched(self, max_batch: int) -> tuple[float, ...]:
        """Relative throughput of a micro-batching host at concurrency 1..max_batch: batch c runs
        in f(c) where f(1) ran one, so c·f(1)/f(c); f is interpolated between the batch sizes
        measured (log-log) and flat beyond the largest."""
        sizes = sorted(self.batch_s)
        out = []
        for c in range(1, max_batch + 1):
            out.append(c * self.single_s / _loglog(sizes, [self.batch_s[b] for b in sizes], c))
        return tuple(out)

    def concurrent(self) -> tuple[float, ...]:
        """Relative throughput with c single requests running side by side, c = 1..the most measured
        (linear between the measured counts; the engine holds the last value beyond)."""
        counts = sorted(self.concurrent_rps)
        base = self.concurrent_rps[counts[0]]
        rel = [self.concurrent_rps[c] / base for c in counts]
        out = []
        for c in range(1, counts[-1] + 1):
            out.append(float(_interp(counts, rel, c)))
        return tuple(out)


@dataclass(frozen=True)
class Calibration:
    path: str
    measured_at: str
    machine: Mapping[str, Any]
    host_start: tuple[LoadPoint, ...]
    host_start_source: str
    stock_start: tuple[LoadPoint, ...]
    stock_start_source: str
    forward: tuple[ForwardCurve, ...]
    forward_source: str
    routed_overhead_s: Measured
    routed_start_s: Measured
    routed_memory_mb: Measured
    batch_delay_s: Measured
    # Client → routed container → host → answer of a trivial activation, c=1 (p50, s).
    routed_activation_s: Measured
    # Pages of the runtime image's files that the containers of one node share (MB).
    image_shared_mb: Measured

    # --- what the simulation needs ---------------------------------------------------------
    def cold_start_s(self, size_mb: float, *, stock: bool) -> float:
        """Cold start of a host of a model of size_mb (s), from the line through the points."""
        points = self.stock_start if stock else self.host_start
        return _fit_at(points, size_mb, lambda p: p.cold_start_s)

    def host_memory_mb(self, size_mb: float, *, stock: bool) -> tuple[float, float]:
        """(own MB, shared MB) of one host serving a model of size_mb: stock hosts hold everything
        themselves; warmwhisk hosts share the resident weights with their node's other hosts."""
        points = self.stock_start if stock else self.host_start
        total = _fit_at(points, size_mb, lambda p: p.memory_mb)
        if stock:
            return total, 0.0
        resident = [p.weights_resident_mb / p.size_mb for p in points if p.weights_resident_mb and p.size_mb]
        shared = size_mb * (sum(resident) / len(resident) if resident else 1.0)
        return max(0.0, total - shared), shared

    def curve_model(self, solo_s: float) -> ForwardCurve:
        """The measured model whose single forward is nearest to solo_s (log scale)."""
        return min(self.forward, key=lambda f: (abs(math.log(max(solo_s, 1e-6) / f.single_s)), f.model))

    def describe(self) -> list[tuple[str, str, str]]:
        """(what, value, source) for every figure, for the report."""

        def pts(points: Sequence[LoadPoint], key: str) -> str:
            return ", ".join(f"{p.model} {p.size_mb:.0f} MB: {getattr(p, key):.2f}" for p in points)

        return [
            ("warmwhisk host cold start (s)", pts(self.host_start, "cold_start_s"), self.host_start_source),
            ("warmwhisk host memory, PSS (MB)", pts(self.host_start, "memory_mb"), self.host_start_source),
            (
                "stock container cold start (s)",
                pts(self.stock_start, "cold_start_s"),
                self.stock_start_source,
            ),
            ("stock container memory, PSS (MB)", pts(self.stock_start, "memory_mb"), self.stock_start_source),
            (
                "forward at batch 1 (ms)",
                ", ".join(f"{f.model}: {1000 * f.single_s:.1f}" for f in self.forward),
                self.forward_source,
            ),
            (
                "batching gain at batch 16",
                ", ".join(f"{f.model}: {f.batched(16)[-1]:.2f}x" for f in self.forward),
                self.forward_source,
            ),
            (
                "concurrency gain (unbatched)",
                ", ".join(
                    f"{f.model}: {f.concurrent()[-1]:.2f}x at {len(f.concurrent())}" for f in self.forward
                ),
                self.forward_source,
            ),
            (
                "routed overhead per activation (ms)",
                f"{1000 * self.routed_overhead_s.value:.2f}",
                self.routed_overhead_s.source,
            ),
            (
                "routed activation, client to answer (ms)",
                f"{1000 * self.routed_activation_s.value:.2f}",
                self.routed_activation_s.source,
            ),
            (
                "runtime image pages shared per node (MB)",
                f"{self.image_shared_mb.value:.0f}",
                self.image_shared_mb.source,
            ),
            (
                "routed container cold start (s)",
                f"{self.routed_start_s.value:.2f}",
                self.routed_start_s.source,
            ),
            (
                "routed container memory (MB)",
                f"{self.routed_memory_mb.value:.0f}",
                self.routed_memory_mb.source,
            ),
            (
                "micro-batching delay (ms)",
                f"{1000 * self.batch_delay_s.value:.0f}",
                self.batch_delay_s.source,
            ),
        ]


# --- reading ---------------------------------------------------------------------------------------


def load_calibration(path: str | Path = DEFAULT) -> Calibration:
    """The calibration in ``path``; `CalibrationError` names the field that is missing or wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CalibrationError(path, "(file)", f"cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(path, "(file)", f"not JSON: {exc}") from None
    return parse_calibration(data, path)


def parse_calibration(data: Any, path: str | Path = "<calibration>") -> Calibration:
    reader = _Reader(path)
    root = reader.mapping(data, "")
    if root.get("format") != FORMAT:
        raise CalibrationError(path, "format", f"expected {FORMAT!r}, got {root.get('format')!r}")
    routed = reader.mapping(root.get("routed"), "routed")
    return Calibration(
        path=str(path),
        measured_at=reader.text(root.get("measured_at"), "measured_at"),
        machine=reader.mapping(root.get("machine"), "machine"),
        host_start=reader.points(root, "host_start", mapped=True),
        host_start_source=reader.source(root, "host_start"),
        stock_start=reader.points(root, "stock_start", mapped=False),
        stock_start_source=reader.source(root, "stock_start"),
        forward=reader.curves(root),
        forward_source=reader.source(root, "forward"),
        routed_overhead_s=reader.measured(routed.get("overhead_s"), "routed.overhead_s"),
        routed_start_s=reader.measured(routed.get("start_s"), "routed.start_s"),
        routed_memory_mb=reader.measured(routed.get("memory_mb"), "routed.memory_mb"),
        batch_delay_s=reader.measured(root.get("batch_delay_s"), "batch_delay_s"),
        routed_activation_s=reader.measured(routed.get("activation_s"), "routed.activation_s"),
        image_shared_mb=reader.measured(root.get("image_shared_mb"), "image_shared_mb"),
    )


class _Reader:
    def __init__(self, path: str | Path) -> None:
        self.path = path

    def fail(self, field: str, message: str) -> CalibrationError:
        return CalibrationError(self.path, field or "(top level)", message)

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, "expected an object")
        return value

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "expected a non-empty string")
        return value

    def number(self, value: Any, field: str, *, positive: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(field, f"expected a number, got {value!r}")
        if value < 0 or (positive and value == 0):
            raise self.fail(field, f"expected a number {'> 0' if positive else '>= 0'}, got {value!r}")
        return float(value)

    def measured(self, value: Any, field: str) -> Measured:
        m = self.mapping(value, field)
        return Measured(
            self.number(m.get("value"), f"{field}.value", positive=False),
            self.text(m.get("source"), f"{field}.source"),
        )

    def source(self, root: dict[str, Any], field: str) -> str:
        return self.text(self.mapping(root.get(field), field).get("source"), f"{field}.source")

    def points(self, root: dict[str, Any], field: str, *, mapped: bool) -> tuple[LoadPoint, ...]:
        block = self.mapping(root.get(field), field)
        raw = block.get("points")
        if not isinstance(raw, list) or len(raw) < 2:
            raise self.fail(f"{field}.points", "expected a list of at least two models (a line needs two)")
        out = []
        for i, item in enumerate(raw):
            where = f"{field}.points[{i}]"
            p = self.mapping(item, where)
            resident = p.get("weights_resident_mb")
            out.append(
                LoadPoint(
                    model=self.text(p.get("model"), f"{where}.model"),
                    size_mb=self.number(p.get("size_mb"), f"{where}.size_mb"),
                    cold_start_s=self.number(p.get("cold_start_s"), f"{where}.cold_start_s"),
                    memory_mb=self.number(p.get("memory_mb"), f"{where}.memory_mb"),
                    weights_resident_mb=(
                        self.number(resident, f"{where}.weights_resident_mb", positive=False)
                        if mapped
                        else None
                    ),
                )
            )
        if len({p.size_mb for p in out}) < 2:
            raise self.fail(f"{field}.points", "needs models of at least two sizes")
        return tuple(out)

    def curves(self, root: dict[str, Any]) -> tuple[ForwardCurve, ...]:
        block = self.mapping(root.get("forward"), "forward")
        raw = block.get("models")
        if not isinstance(raw, list) or not raw:
            raise self.fail("forward.models", "expected a non-empty list")
        out = []
        for i, item in enumerate(raw):
            where = f"forward.models[{i}]"
            m = self.mapping(item, where)
            batch = self.counts(m.get("batch_s"), f"{where}.batch_s")
            concurrent = self.counts(m.get("concurrent_rps"), f"{where}.concurrent_rps")
            out.append(
                ForwardCurve(
                    model=self.text(m.get("model"), f"{where}.model"),
                    size_mb=self.number(m.get("size_mb"), f"{where}.size_mb"),
                    batch_s=batch,
                    concurrent_rps=concurrent,
                )
            )
        return tuple(out)

    def counts(self, value: Any, field: str) -> dict[int, float]:
        m = self.mapping(value, field)
        out: dict[int, float] = {}
        for key, v in m.items():
            if not str(key).isdigit() or int(key) < 1:
                raise self.fail(f"{field}.{key}", "keys are batch sizes or thread counts >= 1")
            out[int(key)] = self.number(v, f"{field}.{key}")
        if 1 not in out:
            raise self.fail(field, "needs the figure at 1")
        return out


# --- small numeric helpers -------------------------------------------------------------------------


def _fit_at(points: Sequence[LoadPoint], size_mb: float, value: Any) -> float:
    """The least-squares line through (size, value) at size_mb, never below the smallest value
    measured (a line through few points may dip below zero for tiny models)."""
    xs = [p.size_mb for p in points]
    ys = [value(p) for p in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return max(min(ys), my + slope * (size_mb - mx))


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def _loglog(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """ys at x, interpolated linearly in log-log between the points; beyond the last point the
    time per item stays that of the last (flat throughput)."""
    if x >= xs[-1]:
        return ys[-1] * x / xs[-1]
    lx = [math.log(v) for v in xs]
    ly = [math.log(v) for v in ys]
    return math.exp(_interp(lx, ly, math.log(x)))
