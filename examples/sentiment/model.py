"""The sentiment head: a linear classifier over all-MiniLM-L6-v2 sentence embeddings.

This file is the `model.py` of the `sentiment-head` model folder (built and trained by
`examples/build_models.py` on `examples/sentiment/data.csv`); the action `__main__.py` beside it
receives the loaded `SentimentHead` and calls its methods.
"""

import torch
from torch import Tensor, nn

EMBEDDING_WIDTH = 384  # all-MiniLM-L6-v2
LABELS = ("negative", "positive")


class SentimentHead(nn.Module):
    """Unit-length sentence embeddings [B, 384] -> logits [B, 2], in `LABELS` order."""

    labels = LABELS

    def __init__(self, width: int = EMBEDDING_WIDTH) -> None:
        super().__init__()
        self.linear = nn.Linear(width, len(LABELS))

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.linear(embeddings)

    def probabilities(self, embeddings: Tensor) -> Tensor:
        """Class probabilities [B, 2] (softmax), under `torch.inference_mode()`."""
        with torch.inference_mode():
            return self(embeddings).softmax(dim=-1)


def build() -> SentimentHead:
    return SentimentHead()
