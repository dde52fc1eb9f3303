"""A BERT encoder in plain torch whose parameter names are Hugging Face `BertModel`'s.

This file is the `model.py` of the `minilm` and `bert-base` model folders: the runtime calls
`build()` on the meta device, then assigns the folder's memory-mapped `model.safetensors`
(strict: every parameter and buffer comes from the file). `build()` reads the `config.json`
(Hugging Face format) beside this file.

Inference only: no dropout, absolute position embeddings, gelu (erf). Attention runs through
`torch.nn.functional.scaled_dot_product_attention`, with the padding mask when a batch has
padding. Sentence embeddings follow sentence-transformers' all-MiniLM-L6-v2: mean pooling over
the attention mask, then L2 normalisation (`BertEncoder.embed`).

Actions receive the loaded `BertEncoder` and only call its methods (`pad`, `embed`, ...), so
they need nothing from this file at import time: inside a container, this file exists only in
the model folder.

No `from __future__ import annotations` here: the runtime imports this file without registering
it in `sys.modules`, and dataclasses cannot resolve string annotations of such a module.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Self

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import Tensor, nn


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a Hugging Face BERT `config.json` this encoder uses."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path: str | Path) -> Self:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: only hidden_act 'gelu' is supported, not {raw['hidden_act']!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        names = {f.name for f in fields(cls)}
        config = cls(**{key: value for key, value in raw.items() if key in names})
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size must be a multiple of num_attention_heads")
        return config


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        # Persistent, as in the Hugging Face checkpoint, so the weights file provides it. Made on
        # the CPU on purpose (4 KB): the runtime builds models on the meta device, where
        # torch.arange imports sympy, about 30 MB more per process.
        positions = torch.arange(config.max_position_embeddings, device="cpu").unsqueeze(0)
        self.register_buffer("position_ids", positions, persistent=True)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        length = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(self.position_ids[:, :length])
        return self.LayerNorm(embeddings)


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        batch, length, width = hidden.shape

        def heads(x: Tensor) -> Tensor:  # [B, T, H] -> [B, heads, T, H/heads]
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden)), attn_mask=mask
        )
        return context.transpose(1, 2).reshape(batch, length, width)


class SelfOutput(nn.Module):
    """A projection, then the residual connection and LayerNorm."""

    def __init__(self, width_in: int, width_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width_out)
        self.LayerNorm = nn.LayerNorm(width_out, eps=eps)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class Attention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config)
        self.output = SelfOutput(config.hidden_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(hidden, mask), hidden)


class Intermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return F.gelu(self.dense(hidden))  # the exact (erf) gelu, as BERT's "gelu"


class Layer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = SelfOutput(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layer:
            hidden = layer(hidden, mask)
        return hidden


class Pooler(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the token vectors the mask keeps: [B, T, H], [B, T] -> [B, H]
    (sentence-transformers' `pooling_mode_mean_tokens`)."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def l2_normalize(vectors: Tensor) -> Tensor:
    """Unit-length rows (sentence-transformers' `Normalize` module)."""
    return F.normalize(vectors, p=2.0, dim=-1)


class BertEncoder(nn.Module):
    """`BertModel` without dropout: `forward(input_ids, attention_mask)` -> last hidden state."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """[B, T] token ids (and [B, T] 1/0 mask) -> [B, T, hidden] last hidden state."""
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: True = attend to this key
        return self.encoder(self.embeddings(input_ids), mask)

    def pooled_output(self, hidden: Tensor) -> Tensor:
        """BertModel's `pooler_output`: tanh(dense(first token))."""
        return self.pooler(hidden)

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Token id lists -> (input_ids, attention_mask), right-padded to the longest one."""
        if not sequences or not all(sequences):
            raise ValueError("pad() needs at least one sequence, and no empty ones")
        longest = max(len(ids) for ids in sequences)
        if longest > self.config.max_position_embeddings:
            raise ValueError(f"sequences are limited to {self.config.max_position_embeddings} tokens")
        input_ids = torch.full((len(sequences), longest), self.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    def embed(self, input_ids: Tensor, attention_mask: Tensor, normalize: bool = True) -> Tensor:
        """Sentence embeddings [B, hidden]: mean pooling over the mask, then (by default) unit
        length, as all-MiniLM-L6-v2 computes them. Runs under `torch.inference_mode()`."""
        with torch.inference_mode():
            pooled = mean_pool(self(input_ids, attention_mask), attention_mask)
            return l2_normalize(pooled) if normalize else pooled


def build(config_path: str | Path | None = None) -> BertEncoder:
    """The encoder described by `config.json` beside this file (or `config_path`)."""
    path = Path(config_path) if config_path is not None else Path(__file__).with_name("config.json")
    return BertEncoder(EncoderConfig.from_json(path))
