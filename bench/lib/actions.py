"""The actions the benchmarks send in /init: the trivial action, the stock model actions (what a
stock OpenWhisk Python action does with a model), and the /init body that carries them."""

from __future__ import annotations

from typing import Any


class ActionCode:
    """An action sent as plain code in /init: source text + entry point name + where it came from."""

    def __init__(self, code: str, main: str, origin: str) -> None:
        self.code, self.main, self.origin = code, main, origin


def init_body(action: ActionCode, env: dict[str, str] | None = None, name: str = "bench") -> dict[str, Any]:
    """The /init body of `action` as the invoker sends it (plain code, not binary)."""
    value = {"name": name, "main": action.main, "code": action.code, "binary": False, "env": env or {}}
    return {"value": value}


# The trivial action every per-activation overhead is measured with, and the value it gets.
TRIVIAL = ActionCode("def main(args):\n    return args\n", "main", "inline: def main(args): return args")
TRIVIAL_VALUE = {"x": 1}

# A stock OpenWhisk Python action serving bert-base: it imports torch, builds the module and loads
# its own copy of the weights at import time (`{load}`), then runs one forward per activation.
_STOCK_TEMPLATE = """
import importlib.util

import torch
{imports}
_spec = importlib.util.spec_from_file_location("bert_model", "/models/bert-base/model.py")
_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_code)
{load}
model.eval()


def main(args):
    length = int(args.get("length", {length}))
    ids = [(1 + 31 * position) % model.config.vocab_size for position in range(length)]
{forward}
    head = [round(v, 6) for v in vector[:4].tolist()]
    return {{"tokens": length, "head": head, "norm": float(vector.norm())}}
"""
_FORWARD = "vector = model.embed(*model.pad([ids]), normalize=False)[0]"

# torch.load of a state-dict copy (/stock/bert-base.pt) into an initialised module.
STOCK_TORCH_LOAD = _STOCK_TEMPLATE.format(
    imports="",
    load='model = _code.build()\nmodel.load_state_dict(torch.load("/stock/bert-base.pt", weights_only=True))',
    length=64,
    forward=f"    {_FORWARD}",
)
# The cheapest stock way (as Hugging Face's from_pretrained): a module built on the meta device,
# given a copy of the weights read with safetensors.
STOCK_SAFETENSORS = _STOCK_TEMPLATE.format(
    imports="from safetensors.torch import load_file\n",
    load='with torch.device("meta"):\n    model = _code.build()\n'
    'model.load_state_dict(load_file("/models/bert-base/model.safetensors"), assign=True)',
    length=16,
    forward=f"    with torch.inference_mode():\n        {_FORWARD}",
)
