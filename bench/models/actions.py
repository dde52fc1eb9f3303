"""The actions bench_models.py sends: the repository's examples (the batched entry wrapped to
report its batches), an idle action, and the batching ceiling of a request shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lib.actions import ActionCode
from lib.targets import REPO

IDLE_ACTION = "import torch\n\ndef main(args):\n    return {'threads': torch.get_num_threads()}\n"

# Appended to an example action: a batched entry that reports each item's batch size and the
# time its batch call took (so the client sees the achieved batches), and an unbatched entry
# that calls the batch body with a batch of one (for examples that only have a batched entry).
WRAPPERS = """

# ---- added by bench/bench_models.py ----
import time as _bench_time

import warmwhisk as _bench_ww
from warmwhisk_runtime.batching import batch_policy as _bench_policy

_bench_batched = globals()[{batched!r}]
_bench_p = _bench_policy(_bench_batched)


@_bench_ww.batch(_bench_p.max_batch_size, _bench_p.max_batch_delay_ms)
def bench_batched(batch, models):
    size, started = len(batch), _bench_time.perf_counter()
    results = _bench_batched(batch, models)
    ms = 1000 * (_bench_time.perf_counter() - started)
    return [dict(r, batch_size=size, batch_ms=ms) if isinstance(r, dict) else r for r in results]


def bench_unbatched(args, models):
    result = _bench_batched([args], models)[0]
    if isinstance(result, BaseException):
        raise result
    return result
"""

# The example actions measured: folder under examples/, its unbatched entry (None: the batch
# entry is called with a batch of one) and its micro-batched entry.
EXAMPLES = {
    "bert": ("bert", "main", "main_batched"),
    "digits": ("digits", None, "main"),
    "minilm": ("sentiment", "main", "main_batched"),
}

# The small models of the batching comparison: example, request, model, request described.
SMALL_MODELS = {
    "digits": ("digits", {"pixels": [float((3 * i) % 17) for i in range(64)]}, "digits MLP (69 KB)", "8x8"),
    "minilm": (
        "minilm",
        {"text": "The staff were friendly and the food arrived quickly."},
        "MiniLM-L6 sentiment (87 MB, 22 M parameters)",
        "one sentence of 13 tokens",
    ),
}

# The batching ceiling for a request shape: a batched action that answers a constant per item.
CEILING_ACTION = """
import warmwhisk


@warmwhisk.batch(max_batch_size={size}, max_batch_delay_ms={delay})
def bench_batched(batch):
    return [{{"batch_size": len(batch), "batch_ms": 0.0}} for _ in batch]
"""


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_example_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleActions:
    """An example's unbatched and batched actions (the latter wrapped to report its batches)."""

    def __init__(self, kind: str) -> None:
        from warmwhisk_runtime.batching import batch_policy

        folder, unbatched, batched = EXAMPLES[kind]
        path = REPO / "examples" / folder / "__main__.py"
        policy = batch_policy(getattr(_import_file(path), batched))
        if policy is None:
            raise SystemExit(f"{path}:{batched} is not a micro-batched entry point")
        self.policy = policy
        source = path.read_text()
        where = str(path.relative_to(REPO))
        wrapped = source + WRAPPERS.format(batched=batched)
        self.batched = ActionCode(
            wrapped, "bench_batched", f"{where}:{batched} (+batch_size, batch_ms fields)"
        )
        if unbatched is not None:
            self.unbatched = ActionCode(source, unbatched, f"{where}:{unbatched}")
        else:
            self.unbatched = ActionCode(wrapped, "bench_unbatched", f"{where}:{batched} called with [args]")

    def ceiling(self, example: str) -> ActionCode:
        """The batching ceiling for this example's requests: constant answers, batched alike."""
        policy = self.policy
        return ActionCode(
            CEILING_ACTION.format(size=policy.max_batch_size, delay=policy.max_batch_delay_ms),
            "bench_batched",
            f"constant answers, batched like {example} (max_batch_size {policy.max_batch_size}, "
            f"max_batch_delay {policy.max_batch_delay_ms:g} ms)",
        )
