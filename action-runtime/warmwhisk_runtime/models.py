"""Declaring the models an action needs, and providing them from the process's model store.

An action declares models at module level and receives them, loaded, in `main`:

    import warmwhisk

    encoder = warmwhisk.Model("/models/minilm", name="encoder")

    def main(args, models):
        return {"vector": models["encoder"](...).tolist()}

`/init` loads every declared model (that is init time); each activation leases them, so a model
in use is never evicted. See loaders.py for the formats and store.py for sharing and eviction.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import os
import re
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loaders import CALLABLE, FORMATS, configure_torch, load_model, size_on_disk, weights_file
from .store import Lease, Loaded, ModelError, ModelRequest, ModelStore

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, eq=False)
class Model:
    """A model an action needs.

    - `path`: a local file or model folder (baked into the image, or a read-only volume), or
    - `url` + `sha256`: an http(s) file fetched once per host into the shared model cache and
      checked against the digest.
    - `factory`: builds the torch module for a bare safetensors/state-dict file (called on the
      meta device; the weights are then mapped in). A model folder brings its own `build()`.
    - `load`: your own `load(path) -> model`, for anything else.
    - `format`: "safetensors", "torchscript" or "torch" when the name does not tell.
    - `allow_pickle`: let `torch.load` unpickle arbitrary objects (only for files you trust).
    """

    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    name: str | None = None
    format: str | None = None
    factory: Callable[[], Any] | None = None
    load: Callable[[str], Any] | None = None
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ModelError("a Model needs exactly one of path= or url=")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ModelError(f"model url must be http(s)://, got {self.url!r}")
            if not self.sha256 or not _SHA256.match(self.sha256.lower()):
                raise ModelError("a model fetched by url needs sha256= (64 hex digits) to check what arrives")
        if self.format is not None and self.format not in FORMATS:
            raise ModelError(f"unknown model format {self.format!r}; use one of {FORMATS}")

    @property
    def label(self) -> str:
        return self.name or (self.path or self.url or "model")

    def get(self) -> Any:
        """This model, during an activation: a declared one as `main(args, models)` receives it,
        or any other model, loaded (or found resident) now and held until the activation ends."""
        from .isolation import current_activation

        activation = current_activation.get()
        leases = None if activation is None else activation.models
        if leases is None:
            raise ModelError("Model.get() works inside an activation (of an unbatched action)")
        return leases.get(self)


def declared_models(namespace: Mapping[str, Any]) -> dict[str, Model]:
    """The `Model`s an action module declares at top level, by name (`name=` or the variable's)."""
    found: dict[str, Model] = {}
    for variable, value in namespace.items():
        if isinstance(value, Model):
            key = value.name or variable
            if key in found and found[key] is not value:
                raise ModelError(f"two models are named {key!r}; give them distinct name= values")
            found[key] = value
    return found


def wants_models(main: Callable[..., Any]) -> bool:
    """True when `main` takes the models too: `main(args, models)`."""
    try:
        params = list(inspect.signature(main).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.name == "models" for p in params)


def _code_identity(fn: Callable[..., Any] | None) -> Hashable:
    """Who builds the model, as part of its content key: the function's source, not its id, so
    equal code in two actions of one host shares the loaded model."""
    if fn is None:
        return None
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return (fn.__module__, fn.__qualname__, id(fn))
    return (fn.__qualname__, hashlib.sha256(source.encode()).hexdigest())


class ModelProvider:
    """Turns `Model` declarations into leases on the store (fetching URLs first)."""

    def __init__(
        self, store: ModelStore, cache_dir: str, torch_threads: int = 0, fetch_timeout_s: float = 600.0
    ) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.fetch_timeout_s = fetch_timeout_s
        self._torch_threads = torch_threads
        self._torch_ready = threading.Lock()
        self._torch_configured = False

    def acquire(self, model: Model) -> Lease:
        return self.store.acquire(self.request(model))

    def preload(self, paths: tuple[str, ...], stop: threading.Event | None = None) -> None:
        """Load self-describing models at process start (a prewarmed container, before /init),
        until `stop` is set. A failure is written to stderr and left for /init to report, where
        it has a caller."""
        for path in paths:
            if stop is not None and stop.is_set():
                return
            try:
                self.acquire(Model(path=path)).release()
            except ModelError as exc:
                sys.stderr.write(f"warmwhisk: preloading {path} failed: {exc}\n")

    def _configure_torch_once(self) -> None:
        with self._torch_ready:
            if not self._torch_configured:
                configure_torch(self._torch_threads)
                self._torch_configured = True

    def lease(self, models: Mapping[str, Model]) -> ActivationModels:
        """Lease `models` (and any the activation asks for later) until `release()`."""
        leases = ActivationModels(self)
        try:
            for key, model in models.items():
                leases.add(key, model)
        except BaseException:
            leases.release()
            raise
        return leases

    @contextlib.contextmanager
    def leased(self, models: Mapping[str, Model]) -> Iterator[ActivationModels]:
        """`lease` for the length of a block."""
        leases = self.lease(models)
        try:
            yield leases
        finally:
            leases.release()

    def request(self, model: Model) -> ModelRequest:
        path = self._local_path(model)
        weights = weights_file(path)
        try:
            stat = weights.stat()
        except OSError as exc:
            raise ModelError(
                f"model {model.label!r}: {weights} does not exist or cannot be read ({exc})"
            ) from exc
        builder = _code_identity(model.load) or _code_identity(model.factory)
        if path.is_dir() and (path / "model.py").is_file():
            builder = builder or ("folder", (path / "model.py").stat().st_mtime_ns)
        fmt = CALLABLE if model.load else model.format
        key = (str(weights.resolve()), stat.st_size, stat.st_mtime_ns, fmt, builder, model.allow_pickle)
        size = size_on_disk(path) if model.load else stat.st_size
        return ModelRequest(
            key=key,
            name=model.label,
            size_bytes=size,
            load=lambda: self._load(path, model),
        )

    def _load(self, path: Path, model: Model) -> Loaded:
        self._configure_torch_once()
        return load_model(path, model.format, model.factory, model.load, model.allow_pickle)

    def _local_path(self, model: Model) -> Path:
        if model.path is not None:
            return Path(model.path)
        assert model.url is not None and model.sha256 is not None
        return fetch(model.url, model.sha256.lower(), self.cache_dir, self.fetch_timeout_s)


class ActivationModels(Mapping[str, Any]):
    """The models one activation holds: a read-only mapping name -> model, plus `get(Model)`."""

    def __init__(self, provider: ModelProvider) -> None:
        self._provider = provider
        self._values: dict[str, Any] = {}
        self._by_model: dict[int, Any] = {}
        self._leases: list[Lease] = []

    def add(self, key: str, model: Model) -> Any:
        lease = self._provider.acquire(model)
        self._leases.append(lease)
        self._values[key] = self._by_model[id(model)] = lease.value
        return lease.value

    def get(self, model: Any, default: Any = None) -> Any:  # type: ignore[override]
        if isinstance(model, Model):
            if id(model) in self._by_model:
                return self._by_model[id(model)]
            return self.add(model.label, model)
        return self._values.get(model, default)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def release(self) -> None:
        for lease in self._leases:
            lease.release()
        self._leases.clear()


def fetch(url: str, sha256: str, cache_dir: Path, timeout_s: float) -> Path:
    """Download `url` once per host into `cache_dir`, named by its digest, verified.

    A file lock makes concurrent fetchers (threads or containers sharing the cache) wait for
    one download; the file appears under its final name only once its digest matched.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(url.split("?", 1)[0]).suffixes[-1:])
    target = cache_dir / f"{sha256}{suffix}"
    if target.exists():
        return target
    with open(cache_dir / f"{sha256}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        digest = hashlib.sha256()
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{sha256}.")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ModelError(
                    f"{url} has sha256 {digest.hexdigest()}, not the expected {sha256}; not used"
                )
            os.chmod(partial, 0o444)
            os.replace(partial, target)
        except OSError as exc:
            raise ModelError(f"fetching {url} failed: {exc}") from exc
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target
