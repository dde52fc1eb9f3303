"""A small MLP that reads 8x8 handwritten digits (scikit-learn's `load_digits` format).

This file is the `model.py` of the `digits` model folder (trained by `examples/build_models.py`);
the action `__main__.py` beside it receives the loaded `DigitsMLP` and calls its methods.
"""

import torch
from torch import Tensor, nn

PIXELS = 64  # 8 x 8, row by row
MAX_INTENSITY = 16.0  # load_digits pixels are integers 0..16


class DigitsMLP(nn.Module):
    """Raw pixels [B, 64] in 0..16 -> logits [B, 10] (scaling to 0..1 is part of the model)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(PIXELS, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, pixels: Tensor) -> Tensor:
        return self.layers(pixels / MAX_INTENSITY)

    def probabilities(self, pixels: Tensor) -> Tensor:
        """Digit probabilities [B, 10] (softmax), under `torch.inference_mode()`."""
        with torch.inference_mode():
            return self(pixels).softmax(dim=-1)


def build() -> DigitsMLP:
    return DigitsMLP()
