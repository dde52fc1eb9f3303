"""Sentiment of short English texts (reviews): all-MiniLM-L6-v2 embeddings + a linear head.

    {"text": "The soup was cold."}          -> {"label": "negative", "probabilities": {...}}
    {"texts": ["Loved it!", "Never again."]} -> {"results": [{"label": ..., "probabilities": ...}, ...]}

`main_batched` (deploy with `--main main_batched`) takes one `text` per activation and
classifies the texts of concurrent activations in one forward pass (up to 32, waiting at most
10 ms); an activation with bad input fails alone.

Models (build them with `examples/build_models.py`): `minilm` (encoder and tokenizer) and
`sentiment-head`, under /models, or under `WARMWHISK_MODELS_DIR` when /init's env sets it.
The runtime loads them once at /init and shares them between concurrent activations.
"""

import os
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

import warmwhisk

MODELS_DIR = Path(os.environ.get("WARMWHISK_MODELS_DIR", "/models"))
MAX_TOKENS = 128  # all-MiniLM-L6-v2's max_seq_length; longer texts are truncated
MAX_TEXTS = 64  # per activation


def load_tokenizer(path: str) -> Tokenizer:
    """The model's tokenizer, truncating to MAX_TOKENS and padding to the longest text of a call
    (tokenizer.json itself pads every text to 128)."""
    tokenizer = Tokenizer.from_file(path)
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
    return tokenizer


encoder = warmwhisk.Model(path=str(MODELS_DIR / "minilm"), name="encoder")
tokenizer = warmwhisk.Model(
    path=str(MODELS_DIR / "minilm" / "tokenizer.json"), name="tokenizer", load=load_tokenizer
)
head = warmwhisk.Model(path=str(MODELS_DIR / "sentiment-head"), name="head")


def embed_texts(texts: list[str], tokenizer: Tokenizer, encoder: Any) -> torch.Tensor:
    """Unit-length sentence embeddings [len(texts), 384] (also used to train the head)."""
    encodings = tokenizer.encode_batch(texts)
    input_ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    attention_mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
    return encoder.embed(input_ids, attention_mask)


def read_texts(args: dict[str, Any]) -> tuple[list[str], bool]:
    """The texts to classify, and whether the caller sent one `text` (not a `texts` list)."""
    if "text" in args and "texts" in args:
        raise ValueError('give either "text" or "texts", not both')
    if "text" in args:
        texts, single = [args["text"]], True
    elif "texts" in args:
        texts, single = args["texts"], False
        if not isinstance(texts, list) or not 1 <= len(texts) <= MAX_TEXTS:
            raise ValueError(f'"texts" must be a list of 1 to {MAX_TEXTS} strings')
    else:
        raise ValueError('expected {"text": "..."} or {"texts": ["...", ...]}')
    for position, text in enumerate(texts):
        where = '"text"' if single else f'"texts"[{position}]'
        if not isinstance(text, str):
            raise ValueError(f"{where} must be a string, not {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{where} is empty")
    return texts, single


def classify(texts: list[str], models: dict[str, Any]) -> list[dict[str, Any]]:
    """Label and class probabilities of each text, from one forward pass."""
    embeddings = embed_texts(texts, models["tokenizer"], models["encoder"])
    labels = models["head"].labels
    return [
        {
            "label": labels[int(row.argmax())],
            "probabilities": {label: round(p, 4) for label, p in zip(labels, row.tolist(), strict=True)},
        }
        for row in models["head"].probabilities(embeddings)
    ]


def main(args: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    texts, single = read_texts(args)
    results = classify(texts, models)
    return results[0] if single else {"results": results}


def read_one_text(args: Any) -> str:
    texts, single = read_texts(args if isinstance(args, dict) else {})
    if not single:
        raise ValueError('main_batched takes one "text" per activation (send "texts" to main)')
    return texts[0]


@warmwhisk.batch(max_batch_size=32, max_batch_delay_ms=10)
def main_batched(batch: list[Any], models: dict[str, Any]) -> list[dict[str, Any] | Exception]:
    return warmwhisk.run_valid(batch, read_one_text, lambda texts: classify(texts, models))
