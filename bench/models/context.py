"""One bench_models.py run: its settings, folders, the containers and local runtimes it started
(all removed by `cleanup`), its results so far, and the machine state it reads (page cache,
proactive reclaim)."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lib.actions import ActionCode
from lib.load import Window
from lib.targets import IMAGE, DockerEngine, LocalProcess, RuntimeContainer, start_runtime
from models.config import MODEL_NAME, log


class ModelBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.models_dir = Path(args.models).resolve()
        self.model_dir = self.models_dir / MODEL_NAME
        self.out_dir = Path(args.out).resolve()
        self.stock_dir = self.out_dir / "stock"
        self.run_id = uuid.uuid4().hex[:12]
        self.docker = DockerEngine(self.run_id)
        self.locals: list[LocalProcess] = []
        self.results: dict[str, Any] = {"quick": self.quick, "image": IMAGE, "sections": {}}
        self.in_process_noise: list[dict[str, Any]] = []

    @property
    def weights(self) -> Path:
        return self.model_dir / "model.safetensors"

    @property
    def stock_weights(self) -> Path:
        return self.stock_dir / f"{MODEL_NAME}.pt"

    @property
    def window(self) -> Window:
        a = self.args
        return Window(a.duration, a.warmup, a.min_cycles, a.max_point_s, a.max_first_s)

    # -- set-up -------------------------------------------------------------------------------
    def wait_for_models(self) -> None:
        deadline = time.monotonic() + self.args.wait_models_s
        while not (self.weights.is_file() and (self.models_dir / "digits" / "model.safetensors").is_file()):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{self.weights} (and {self.models_dir}/digits) not found: run "
                    f".venv/bin/python examples/build_models.py --out {self.models_dir}"
                )
            log(f"waiting for {self.weights} ...")
            time.sleep(30)

    def prepare_stock_copy(self) -> Path:
        """The stock action's state-dict .pt, made once from the safetensors, world-readable."""
        target, source = self.stock_weights, self.weights
        if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            import torch
            from safetensors.torch import load_file

            log(f"writing the stock state-dict copy {target}")
            self.stock_dir.mkdir(parents=True, exist_ok=True)
            state = load_file(str(source))
            partial = target.with_suffix(".pt.partial")
            torch.save(state, str(partial))
            del state
            os.replace(partial, target)
        for path in (self.out_dir, self.stock_dir):
            path.chmod(0o755)
        target.chmod(0o444)
        os.sync()  # pages of a just-written file count as private (dirty) until written back
        return target

    # -- what is measured ---------------------------------------------------------------------
    def container(self, env: dict[str, str] | None = None) -> RuntimeContainer:
        volumes = {
            str(self.models_dir): {"bind": "/models", "mode": "ro"},
            str(self.stock_dir): {"bind": "/stock", "mode": "ro"},
        }
        return self.docker.run(env or {}, volumes)

    def remove_containers(self) -> None:
        self.docker.remove_all()

    def start_local(self, name: str, action: ActionCode, init_env: dict[str, str]) -> LocalProcess:
        """A local runtime process (concurrent, up to 64 at once) serving `action`."""
        env = {"__OW_ALLOW_CONCURRENT": "true", "WARMWHISK_MAX_CONCURRENT": "64"}
        r = start_runtime(name, self.out_dir / "runtimes" / name, env, ready_timeout_s=60.0)
        self.locals.append(r)
        r.wait_health(lambda h: True, timeout_s=60)
        r.init(action, env={"WARMWHISK_MODELS_DIR": str(self.models_dir), **init_env})
        return r

    def stop_locals(self) -> None:
        for r in self.locals:
            r.stop()
        self.locals.clear()

    def cleanup(self) -> None:
        self.stop_locals()
        if self.docker.connected:
            self.remove_containers()


def warm_page_cache(*paths: Path) -> None:
    """Read files through once: "the model is already on the host" means in the page cache, and
    proactive reclaim may have dropped pages of a file nobody used for a minute."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def damon_schemes() -> list[str]:
    """Running DAMON schemes (proactive reclaim) of this kernel, e.g. ['paddr:pageout']."""
    found = []
    root = Path("/sys/kernel/mm/damon/admin/kdamonds")
    with contextlib.suppress(OSError, ValueError):
        for kdamond in sorted(root.glob("[0-9]*")):
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for context in sorted((kdamond / "contexts").glob("[0-9]*")):
                ops = (context / "operations").read_text().strip()
                for scheme in sorted((context / "schemes").glob("[0-9]*")):
                    found.append(f"{ops}:{(scheme / 'action').read_text().strip()}")
    return found
