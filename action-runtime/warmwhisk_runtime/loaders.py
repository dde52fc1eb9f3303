"""Loading model files safely with torch, memory-mapped where the format allows.

Formats:
- **safetensors** weights plus a factory that builds the module: the module is built on the
  meta device (no memory) and the weights are assigned as tensors that map the file read-only,
  so every process (container) that maps the same file shares one copy in the page cache.
- **TorchScript** (`torch.jit.load`): self-contained; loaded into process memory.
- **torch.load** files: only `weights_only=True` (tensors and plain containers) unless the
  action opts in with `allow_pickle=True`; loaded with `mmap=True` where the file allows it.
- a **model folder**: `model.safetensors` + `model.py` (defining `build()` -> nn.Module), or
  `model.pt` (TorchScript). It describes itself, so a container can load it at process start,
  before any action code arrives (prewarm).
- a `load(path)` callable of the action's: whatever it returns.

torch is imported lazily, on the first model load, so actions without models (and routed
containers) never pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .store import Loaded, ModelError

SAFETENSORS = "safetensors"
TORCHSCRIPT = "torchscript"
TORCH_LOAD = "torch"
CALLABLE = "callable"
FORMATS = (SAFETENSORS, TORCHSCRIPT, TORCH_LOAD, CALLABLE)

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".ckpt")


def detect_format(path: Path) -> str:
    """The format of a model file or folder, from its name and (for zips) its contents."""
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return SAFETENSORS
        if (path / "model.pt").is_file():
            return TORCHSCRIPT
        raise ModelError(f"model folder {path} holds neither model.safetensors (+ model.py) nor model.pt")
    if path.suffix == ".safetensors":
        return SAFETENSORS
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in name or name.startswith("code/") for name in archive.namelist()):
                return TORCHSCRIPT
        return TORCH_LOAD
    if path.suffix in PICKLE_SUFFIXES:
        return TORCH_LOAD
    raise ModelError(f"cannot tell the format of {path}: name it *.safetensors, or give format= or load=")


def weights_file(path: Path) -> Path:
    """The file whose bytes are the model (a folder's model.safetensors or model.pt)."""
    if path.is_dir():
        for name in ("model.safetensors", "model.pt"):
            if (path / name).is_file():
                return path / name
    return path


def folder_factory(folder: Path) -> Callable[[], Any]:
    """`build` from a model folder's model.py."""
    source = folder / "model.py"
    if not source.is_file():
        raise ModelError(f"model folder {folder} has model.safetensors but no model.py defining build()")
    name = "warmwhisk_model_" + hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up there
    spec.loader.exec_module(module)
    build = getattr(module, "build", None)
    if not callable(build):
        raise ModelError(f"{source} defines no build() function")
    return build


_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Build modules without initialising their weights: the file's weights replace them anyway.
    On the meta device some initialisers (normal_, trunc_normal_) run through Python
    decompositions that import sympy and friends, about 70 MB of heap in every process."""
    import torch

    with _BUILD_LOCK:  # the patch is process-wide: one build at a time restores it correctly
        names = [name for name in dir(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
        saved = {name: getattr(torch.nn.init, name) for name in names}
        for name in names:
            setattr(torch.nn.init, name, _keep)
        try:
            yield
        finally:
            for name, function in saved.items():
                setattr(torch.nn.init, name, function)


def _keep(tensor: Any, *_args: Any, **_kwargs: Any) -> Any:
    return tensor


def load_safetensors(path: Path, factory: Callable[[], Any] | None) -> Loaded:
    import torch
    from safetensors import SafetensorError, safe_open

    file = weights_file(path)
    if factory is None:
        if not path.is_dir():
            raise ModelError(
                f"{file.name} holds only weights: give factory= (a function that builds the module)"
            )
        factory = folder_factory(path)
    try:
        with safe_open(str(file), framework="pt") as weights:
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{file} is not a valid safetensors file: {exc}") from exc
    with _skip_init(), torch.device("meta"):
        module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(
            f"the factory for {file.name} returned {type(module).__name__}, not a torch.nn.Module"
        )
    try:
        result = module.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise ModelError(f"the weights in {file.name} do not fit the module: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"the weights in {file.name} do not fit the module: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    still_meta = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if still_meta:
        raise ModelError(
            f"{still_meta[:5]} are not in {file.name} and were not created by the factory on a real "
            "device: register them as persistent buffers, or create them with an explicit device='cpu'"
        )
    module.eval().requires_grad_(False)
    return Loaded(module, file.stat().st_size)


def load_torchscript(path: Path) -> Loaded:
    import torch

    file = weights_file(path)
    try:
        module = torch.jit.load(str(file), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelError(f"{file} is not a loadable TorchScript file: {exc}") from exc
    module.eval()
    return Loaded(module, file.stat().st_size)


def load_torch_file(path: Path, factory: Callable[[], Any] | None, allow_pickle: bool) -> Loaded:
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle, mmap=_mmappable(path))
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"refused to load {path.name}: it holds pickled Python objects, which can run arbitrary code. "
            "Use safetensors, or pass allow_pickle=True for a file you trust"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path} is not a loadable torch file: {exc}") from exc
    if factory is not None:
        with _skip_init(), torch.device("meta"):
            module = factory()
        try:
            module.load_state_dict(obj, strict=True, assign=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ModelError(f"the weights in {path.name} do not fit the module: {exc}") from exc
        obj = module.eval().requires_grad_(False)
    return Loaded(obj, path.stat().st_size)


def _mmappable(path: Path) -> bool:
    return zipfile.is_zipfile(path)  # torch.load(mmap=True) needs the zip serialization format


def load_model(
    path: Path,
    fmt: str | None,
    factory: Callable[[], Any] | None,
    load: Callable[[str], Any] | None,
    allow_pickle: bool,
) -> Loaded:
    """Load one model from a local file or folder."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    if load is not None:
        return Loaded(load(str(path)), size_on_disk(path))
    fmt = fmt or detect_format(path)
    if fmt == SAFETENSORS:
        return load_safetensors(path, factory)
    if fmt == TORCHSCRIPT:
        return load_torchscript(path)
    if fmt == TORCH_LOAD:
        return load_torch_file(path, factory, allow_pickle)
    raise ModelError(f"unknown model format {fmt!r}; use one of {FORMATS}")


def size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def usable_cpus() -> int:
    """CPUs this process may run on, honouring a cgroup (docker --cpus) quota."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def configure_torch(threads: int | None) -> None:
    """Intra-op threads: all usable CPUs by default (one forward at a time uses the whole
    container; concurrent activations on few cores are best served by micro-batching, which
    runs one batched forward at a time). Inter-op threads: 1, as inference graphs here are
    sequential and extra pools only oversubscribe the cores."""
    import torch

    torch.set_num_threads(threads or usable_cpus())
    with contextlib.suppress(RuntimeError):  # already set once inter-op work ran: keep it
        torch.set_num_interop_threads(1)
