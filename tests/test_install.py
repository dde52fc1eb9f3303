"""The components install as a user installs them, and the runtime stands without the scaler:
in a fresh virtualenv holding only the runtime, the host contract and their dependencies, every
runtime module imports and `python -m warmwhisk_runtime --help` works; the image holds no scaler."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from runtime_harness import IMAGE, REPO

WHEELHOUSE = REPO / "build" / "wheelhouse"  # the image's third-party wheels (make image)
RUNTIME_DEPENDENCIES = (
    "gunicorn", "packaging", "prometheus_client", "redis", "hiredis", "uvloop", "httptools", "orjson",
)  # fmt: skip


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_runtime_installs_and_imports_without_the_scaler(tmp_path: Path) -> None:
    if not WHEELHOUSE.is_dir():
        pytest.skip("needs build/wheelhouse: run `make image` first")
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels,
        REPO / "host-protocol", REPO / "action-runtime")  # fmt: skip
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    dependencies = [
        path for path in WHEELHOUSE.glob("*.whl") if path.name.split("-")[0].lower() in RUNTIME_DEPENDENCIES
    ]
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *dependencies, *wheels.glob("*.whl"))
    probe = (
        "import importlib, pkgutil, sys, warmwhisk_runtime\n"
        "names = [m.name for m in pkgutil.iter_modules(warmwhisk_runtime.__path__)]\n"
        "for name in names:  # every module, models included: torch is imported only when a model loads\n"
        "    importlib.import_module(f'warmwhisk_runtime.{name}')\n"
        "assert 'torch' not in sys.modules\n"
        "import warmwhisk_protocol.registry\n"
        "assert not [m for m in sys.modules if m.startswith('warmwhisk_scaler')], 'the scaler was imported'\n"
        "try:\n"
        "    import warmwhisk_scaler\n"
        "except ImportError:\n"
        "    print('no scaler', len(names))\n"
    )
    assert run(python, "-c", probe, cwd=tmp_path).startswith("no scaler")
    assert "python -m warmwhisk_runtime" in run(python, "-m", "warmwhisk_runtime", "--help", cwd=tmp_path)
    assert "python -m warmwhisk_runtime" in run(target / "bin" / "warmwhisk-runtime", "--help", cwd=tmp_path)


@pytest.mark.docker
def test_the_runtime_image_holds_no_scaler_code(docker_client) -> None:
    output = docker_client.containers.run(
        IMAGE,
        ["sh", "-c", "find / -xdev -name 'warmwhisk_scaler*' 2>/dev/null; "
         "python -c 'import warmwhisk_runtime.server, warmwhisk_protocol.registry; print(\"ok\")'"],
        remove=True,
    ).decode()  # fmt: skip
    assert output.split() == ["ok"], output
