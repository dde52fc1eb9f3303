"""Resident models through the runtime's HTTP contract: /init loads, activations share, batching."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from safetensors.torch import save_file

from runtime_harness import wait_until
from test_runtime_concurrency import run_many

MODEL_PY = """
import torch

class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1, bias=False)

    def forward(self, x):
        return self.linear(x)

def build():
    return Scale()
"""

CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}


def model_folder(root: Path, scale: float = 2.0, name: str = "scale") -> Path:
    """A self-describing model folder whose model multiplies the sum of its input by `scale`."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(MODEL_PY)
    save_file({"linear.weight": torch.full((1, 4), scale)}, str(folder / "model.safetensors"))
    return folder


def action(folder: Path, body: str) -> str:
    header = f"import warmwhisk, torch\nscale = warmwhisk.Model({str(folder)!r}, name='scale')\n"
    return header + textwrap.dedent(body)


UNBATCHED = """
def main(args, models):
    x = torch.tensor(args["x"], dtype=torch.float32)
    return {"y": models["scale"](x).item()}
"""


def test_the_model_is_loaded_once_at_init_and_shared_by_concurrent_activations(
    start_process_runtime, tmp_path
):
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(action(model_folder(tmp_path), UNBATCHED))[0] == 200
    health = runtime.health()
    assert health["model_loads"] == 1 and health["models"][0]["name"] == "scale"
    results = run_many(runtime, [{"value": {"x": [1, 1, 1, float(i)]}} for i in range(16)])
    assert results == [(200, {"y": 2.0 * (3 + i)}) for i in range(16)]
    assert runtime.health()["model_loads"] == 1
    assert "warmwhisk_model_loads 1.0" in runtime.metrics()


def test_a_prewarmed_container_holds_the_model_before_init(start_process_runtime, tmp_path):
    folder = model_folder(tmp_path)
    runtime = start_process_runtime(env={**CONCURRENT, "WARMWHISK_PRELOAD": str(folder)})
    wait_until(lambda: runtime.health()["model_loads"] == 1, timeout_s=30, what="the preload")
    assert runtime.init(action(folder, UNBATCHED))[0] == 200
    assert runtime.run({"x": [1, 1, 1, 1]}) == (200, {"y": 8.0})
    # /init found the model resident: no second load (how much faster that is: make bench-models)
    assert runtime.health()["model_loads"] == 1, "the declared model must be the preloaded one"


class NotATensor:
    """Any pickled class: unpickling it could run code."""


def test_bad_models_fail_init_clearly(start_process_runtime, tmp_path):
    cases = {
        "missing": (f"import warmwhisk\nm = warmwhisk.Model({str(tmp_path / 'absent')!r})\n"
                    "def main(a):\n    return a\n", "does not exist"),
        "pickle": (f"import warmwhisk\nm = warmwhisk.Model({str(tmp_path / 'p.pkl')!r}, format='torch')\n"
                   "def main(a):\n    return a\n", "pickled Python objects"),
        "budget": (action(model_folder(tmp_path), UNBATCHED), "more than the whole model memory budget"),
    }  # fmt: skip
    torch.save({"state": NotATensor()}, tmp_path / "p.pkl")  # a pickled object, not just tensors
    for name, (source, message) in cases.items():
        env = {"WARMWHISK_MODEL_MEMORY_BYTES": "10"} if name == "budget" else {}
        runtime = start_process_runtime(env=env)
        status, body = runtime.init(source)
        assert status == 502 and message in body["error"], (name, body)
        assert runtime.alive() and runtime.health()["status"] == "ok"


def test_a_bad_model_or_bad_input_in_one_activation_leaves_the_others_serving(
    start_process_runtime, tmp_path
):
    good = model_folder(tmp_path)
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage")
    source = action(
        good,
        f"""
        def main(args, models):
            if args.get("other"):
                warmwhisk.Model({str(tmp_path / "corrupt.safetensors")!r}, factory=lambda: None).get()
            x = torch.tensor(args["x"], dtype=torch.float32)
            return {{"y": models["scale"](x).item()}}
    """,
    )
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(source)[0] == 200
    status, body = runtime.run({"x": [1, 2], "other": False})  # wrong input shape
    assert status == 200 and "shapes cannot be multiplied" in body["error"]
    status, body = runtime.run({"x": [1, 1, 1, 1], "other": True})  # a corrupt model, on demand
    assert status == 200 and "not a valid safetensors file" in body["error"]
    assert runtime.run({"x": [1, 1, 1, 1]}) == (200, {"y": 8.0})
    assert [m["name"] for m in runtime.health()["models"]] == ["scale"]


def test_micro_batching_through_the_runtime(start_process_runtime, tmp_path):
    source = action(
        model_folder(tmp_path),
        """
        @warmwhisk.batch(max_batch_size=8, max_batch_delay_ms=20)
        def main(batch, models):
            rows = [item["x"] for item in batch if len(item.get("x", [])) == 4]
            ys = models["scale"](torch.tensor(rows, dtype=torch.float32)).flatten().tolist() if rows else []
            out = []
            for item in batch:
                if len(item.get("x", [])) != 4:
                    out.append(ValueError("x must hold 4 numbers"))
                else:
                    out.append({"y": ys.pop(0), "batch": len(batch)})
            return out
    """,
    )
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(source)[0] == 200
    bodies = [{"value": {"x": [0, 0, 0, float(i)]}} for i in range(24)] + [{"value": {"x": [1]}}]
    results = run_many(runtime, bodies)
    assert [r[1]["y"] for r in results[:24]] == [2.0 * i for i in range(24)]
    assert max(r[1]["batch"] for r in results[:24]) > 1
    assert results[24][0] == 200 and "x must hold 4 numbers" in results[24][1]["error"]
    lone = runtime.run({"x": [1, 1, 1, 1]})
    assert lone == (200, {"y": 8.0, "batch": 1})
