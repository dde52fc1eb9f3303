"""Handwritten digit recognition (8x8 images, scikit-learn's digits format), micro-batched.

    {"pixels": [64 numbers 0..16, row by row]} -> {"digit": 3, "confidence": 0.998}

Concurrent activations are gathered into one forward pass (up to 32, waiting at most 5 ms).
An activation with bad input fails alone; the others in its batch still get their answers.
Model: `digits` under /models, or under `WARMWHISK_MODELS_DIR` when /init's env sets it
(build it with `examples/build_models.py`).
"""

import math
import os
from pathlib import Path
from typing import Any

import torch

import warmwhisk

MODELS_DIR = Path(os.environ.get("WARMWHISK_MODELS_DIR", "/models"))
PIXELS = 64
MAX_INTENSITY = 16

digits = warmwhisk.Model(path=str(MODELS_DIR / "digits"), name="digits")


def read_pixels(args: Any) -> list[float]:
    pixels = args.get("pixels") if isinstance(args, dict) else None
    if not isinstance(pixels, list) or len(pixels) != PIXELS:
        raise ValueError(f'expected {{"pixels": [{PIXELS} numbers 0..{MAX_INTENSITY}]}} (8x8, row by row)')
    for position, value in enumerate(pixels):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"pixels[{position}] is {value!r}, not a number")
        if not 0 <= value <= MAX_INTENSITY:
            raise ValueError(f"pixels[{position}] is {value}, outside 0..{MAX_INTENSITY}")
    return [float(value) for value in pixels]


def classify(model: Any, images: list[list[float]]) -> list[dict[str, Any]]:
    confidence, digit = model.probabilities(torch.tensor(images)).max(dim=1)
    return [
        {"digit": label, "confidence": round(probability, 4)}
        for label, probability in zip(digit.tolist(), confidence.tolist(), strict=True)
    ]


@warmwhisk.batch(max_batch_size=32, max_batch_delay_ms=5)
def main(batch: list[Any], models: dict[str, Any]) -> list[dict[str, Any] | Exception]:
    return warmwhisk.run_valid(batch, read_pixels, lambda images: classify(models["digits"], images))
