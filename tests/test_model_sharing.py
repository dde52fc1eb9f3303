"""Real containers sharing one read-only model mount hold one copy of the weights, not N."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_harness import ContainerRuntime, write_model_folder
from warmwhisk_runtime.procmem import total_pss_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODEL_PY = """
import torch

def build():
    return torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(16)])
"""
CONTAINERS = 3
IDLE_ACTION = "import torch\ndef main(args):\n    return {'threads': torch.get_num_threads()}\n"
SERVING_ACTION = """
import torch, warmwhisk
net = warmwhisk.Model("/models/mlp", name="mlp")
def main(args, models):
    with torch.no_grad():
        return {"sum": float(models["mlp"](torch.ones(1, 2048)).sum())}
"""


@pytest.fixture(scope="module")
def model_dir() -> Iterator[Path]:
    """A 268 MB model folder the container user (uid 1000) can read, flushed to disk. (Big enough
    that what each container allocates to serve, a few MB, does not read as copies.)"""
    root = Path(tempfile.mkdtemp(prefix="warmwhisk-models-"))
    folder = write_model_folder(root / "mlp", MODEL_PY)
    os.sync()  # pages of a just-written file count as private (dirty) until written back
    for path in (root, folder):
        path.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o444)
    yield folder
    shutil.rmtree(root)


def container_pids(runtime: ContainerRuntime) -> list[int]:
    return [int(row[0]) for row in runtime.container.top(ps_args="-o pid")["Processes"]]


def measure(docker_client, model_dir: Path, action: str) -> int:
    """Total PSS of CONTAINERS runtimes that each ran `action` once."""
    runtimes = []
    try:
        for _ in range(CONTAINERS):
            runtime = ContainerRuntime(
                docker_client, env={}, volumes={str(model_dir.parent): {"bind": "/models", "mode": "ro"}}
            )
            runtimes.append(runtime)
            runtime.wait_ready(timeout_s=60)
            assert runtime.init(action, timeout=120)[0] == 200
            status, result = runtime.run({})
            assert status == 200 and "error" not in result, result
        return sum(total_pss_bytes(container_pids(r)) for r in runtimes)
    finally:
        for runtime in runtimes:
            runtime.stop()


def test_containers_mapping_one_model_share_its_pages(docker_client, model_dir):
    weights = (model_dir / "model.safetensors").stat().st_size
    idle = measure(docker_client, model_dir, IDLE_ACTION)
    serving = measure(docker_client, model_dir, SERVING_ACTION)
    copies = (serving - idle) / weights
    print(f"{CONTAINERS} containers: idle {idle / 1e6:.0f} MB, serving {serving / 1e6:.0f} MB, "
          f"weights {weights / 1e6:.0f} MB -> {copies:.2f} copies")  # fmt: skip
    assert serving > idle > 0, "PSS was not measured"
    # The bound the README states for `weight_copies_4` (make bench-models).
    assert copies <= 1.15, f"{CONTAINERS} containers hold {copies:.2f} copies of the weights"
