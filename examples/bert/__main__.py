"""A BERT-base-sized encoder (about 87 M parameters, seeded weights) for throughput and memory
experiments. Two entry points over the same model:

- `main`: one forward pass per activation (concurrent activations run side by side);
- `main_batched`: concurrent activations are micro-batched into one forward pass, padded to the
  longest sequence of the batch (deploy with `--main main_batched`; the batch limits come from
  the env `BERT_MAX_BATCH_SIZE`, default 16, and `BERT_MAX_BATCH_DELAY_MS`, default 5).

    {"tokens": [101, 2023, ...]} or {"length": 64} (deterministic ids)
    -> {"tokens": 64, "head": [4 floats], "norm": 12.3}   (of the mean-pooled last hidden state)

Model: `bert-base` under /models, or under `WARMWHISK_MODELS_DIR` when /init's env sets it
(build it with `examples/build_models.py`).
"""

import os
from pathlib import Path
from typing import Any

import warmwhisk

MODELS_DIR = Path(os.environ.get("WARMWHISK_MODELS_DIR", "/models"))
MAX_BATCH_SIZE = int(os.environ.get("BERT_MAX_BATCH_SIZE", "16"))
MAX_BATCH_DELAY_MS = float(os.environ.get("BERT_MAX_BATCH_DELAY_MS", "5"))

encoder = warmwhisk.Model(path=str(MODELS_DIR / "bert-base"), name="encoder")


def token_ids(args: Any, vocab_size: int, max_tokens: int) -> list[int]:
    """The sequence to encode: the caller's `tokens`, or `length` deterministic ids."""
    if not isinstance(args, dict) or ("tokens" in args) == ("length" in args):
        raise ValueError('expected {"tokens": [token ids]} or {"length": n}')
    if "length" in args:
        length = args["length"]
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= max_tokens:
            raise ValueError(f'"length" must be an integer from 1 to {max_tokens}')
        return [(1 + 31 * position) % vocab_size for position in range(length)]
    tokens = args["tokens"]
    if not isinstance(tokens, list) or not 1 <= len(tokens) <= max_tokens:
        raise ValueError(f'"tokens" must be a list of 1 to {max_tokens} token ids')
    for position, token in enumerate(tokens):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise ValueError(f"tokens[{position}] is {token!r}, not a token id in 0..{vocab_size - 1}")
    return tokens


def encode(model: Any, sequences: list[list[int]]) -> list[dict[str, Any]]:
    """One forward pass over the sequences (padded to the longest); a summary of each."""
    vectors = model.embed(*model.pad(sequences), normalize=False)
    return [
        {"tokens": len(ids), "head": [round(v, 6) for v in vector[:4].tolist()], "norm": round(norm, 6)}
        for ids, vector, norm in zip(sequences, vectors, vectors.norm(dim=1).tolist(), strict=True)
    ]


def read(args: Any, model: Any) -> list[int]:
    return token_ids(args, model.config.vocab_size, model.config.max_position_embeddings)


def main(args: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    model = models["encoder"]
    return encode(model, [read(args, model)])[0]


@warmwhisk.batch(max_batch_size=MAX_BATCH_SIZE, max_batch_delay_ms=MAX_BATCH_DELAY_MS)
def main_batched(batch: list[Any], models: dict[str, Any]) -> list[dict[str, Any] | Exception]:
    model = models["encoder"]
    return warmwhisk.run_valid(
        batch, lambda args: read(args, model), lambda sequences: encode(model, sequences)
    )
