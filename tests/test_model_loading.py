"""Loading real (small) torch models safely: formats, folders, URLs, and every way it can go wrong."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from runtime_harness import write_model_folder
from warmwhisk_runtime.loaders import detect_format, load_model
from warmwhisk_runtime.models import Model, ModelProvider, declared_models, wants_models
from warmwhisk_runtime.store import ModelError, ModelStore

MODEL_PY = """
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(x)

def build():
    return Tiny()
"""


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 2))


def make_folder(root: Path) -> Path:
    return write_model_folder(root / "tiny", MODEL_PY)


def provider(tmp_path: Path, budget: int = 10**9) -> ModelProvider:
    return ModelProvider(ModelStore(budget), str(tmp_path / "cache"))


def test_safetensors_with_a_factory_is_memory_mapped_and_matches(tmp_path):
    path = tmp_path / "w.safetensors"
    reference = tiny()
    save_file(reference.state_dict(), str(path))
    loaded = load_model(path, None, tiny, None, allow_pickle=False)
    x = torch.randn(3, 4)
    assert torch.equal(loaded.value(x), reference(x))
    assert loaded.size_bytes == path.stat().st_size
    assert not loaded.value.training and not any(p.requires_grad for p in loaded.value.parameters())
    # The weights are views of the file's mapping, not copies in the heap.
    maps = Path("/proc/self/maps").read_text()
    assert str(path) in maps


def test_a_model_folder_builds_itself(tmp_path):
    folder = make_folder(tmp_path)
    assert detect_format(folder) == "safetensors"
    module = load_model(folder, None, None, None, allow_pickle=False).value
    assert module(torch.ones(1, 4)).shape == (1, 2)


def test_torchscript_and_plain_state_dicts(tmp_path):
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(tiny()).save(str(scripted))
    assert detect_format(scripted) == "torchscript"
    assert load_model(scripted, None, None, None, False).value(torch.ones(1, 4)).shape == (1, 2)

    state = tmp_path / "state.pt"
    torch.save(tiny().state_dict(), state)  # tensors only: fine with weights_only=True
    assert detect_format(state) == "torch"
    assert load_model(state, None, tiny, None, False).value(torch.ones(1, 4)).shape == (1, 2)


class Custom:
    """Stands for an arbitrary pickled object (which could run code when unpickled)."""

    def __init__(self) -> None:
        self.weights = torch.ones(2)


def test_a_pickle_file_is_refused_unless_the_action_opts_in(tmp_path):
    path = tmp_path / "model.pkl"
    torch.save(Custom(), path)
    with pytest.raises(ModelError, match="pickled Python objects"):
        load_model(path, "torch", None, None, allow_pickle=False)
    assert isinstance(load_model(path, "torch", None, None, allow_pickle=True).value, Custom)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a safetensors file at all", "not a valid safetensors file"),
        (b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}', "not a valid safetensors file"),
    ],
)
def test_corrupt_safetensors(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path, None, tiny, None, False)


def test_weights_that_do_not_fit_the_module(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"0.weight": torch.ones(3, 3), "0.bias": torch.ones(3)}, str(path))
    with pytest.raises(ModelError, match="do not fit the module"):
        load_model(path, None, tiny, None, False)
    save_file({"other.weight": torch.ones(2, 4)}, str(path))
    with pytest.raises(ModelError, match="missing"):
        load_model(path, None, tiny, None, False)


def test_missing_file_and_missing_factory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors", None, tiny, None, False)
    path = tmp_path / "w.safetensors"
    save_file(tiny().state_dict(), str(path))
    with pytest.raises(ModelError, match="give factory="):
        load_model(path, None, None, None, False)


def test_declarations_are_validated():
    with pytest.raises(ModelError, match="exactly one of path= or url="):
        Model()
    with pytest.raises(ModelError, match="needs sha256"):
        Model(url="http://127.0.0.1/x.safetensors")
    with pytest.raises(ModelError, match="http"):
        Model(url="ftp://x", sha256="0" * 64)
    a, b = Model(path="/a", name="enc"), Model(path="/b")
    assert declared_models({"a": a, "b": b, "other": 3}) == {"enc": a, "b": b}
    assert wants_models(lambda args, models: None) and not wants_models(lambda args: None)


def test_provider_keys_by_content_so_equal_declarations_share_one_load(tmp_path):
    folder = make_folder(tmp_path)
    models = provider(tmp_path)
    with (
        models.leased({"x": Model(path=str(folder))}) as first,
        models.leased({"y": Model(path=str(folder))}) as second,
    ):
        assert first["x"] is second["y"]
    assert models.store.loads == 1


# ------------------------------------------------------------------------------ models by URL
@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    served = tmp_path / "served"
    served.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, hits
    server.shutdown()
    server.server_close()


def test_a_url_model_is_fetched_once_verified_and_cached(tmp_path, file_server):
    base, served, hits = file_server
    save_file(tiny().state_dict(), str(served / "w.safetensors"))
    digest = hashlib.sha256((served / "w.safetensors").read_bytes()).hexdigest()
    declaration = Model(url=f"{base}/w.safetensors", sha256=digest, factory=tiny)
    models = provider(tmp_path)
    threads = [threading.Thread(target=lambda: models.acquire(declaration).release()) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hits == ["/w.safetensors"] and models.store.loads == 1
    # A second process (another container sharing the cache) finds the file without fetching.
    provider(tmp_path).acquire(declaration).release()
    assert hits == ["/w.safetensors"]


def test_a_url_whose_digest_does_not_match_is_refused(tmp_path, file_server):
    base, served, _ = file_server
    (served / "w.safetensors").write_bytes(b"tampered")
    declaration = Model(url=f"{base}/w.safetensors", sha256="0" * 64, factory=tiny)
    with pytest.raises(ModelError, match="not the expected"):
        provider(tmp_path).acquire(declaration)
    assert list((tmp_path / "cache").glob("*.safetensors")) == []
    with pytest.raises(ModelError, match="fetching"):
        provider(tmp_path).acquire(Model(url=f"{base}/absent.safetensors", sha256="1" * 64, factory=tiny))
