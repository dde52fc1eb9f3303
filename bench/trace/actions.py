"""The actions the trace benchmark sends in /init: a trace function as a warmwhisk model action
(its model resident and shared, its run time waited out), and the stock way of loading a model."""

from __future__ import annotations

from lib.actions import ActionCode

# A warmwhisk model action: the runtime maps the model folder's weights at /init (host mode: when
# the host loads the action); the host's first activation reads one value of every 4 KiB page of
# the weights (as a forward pass reads them all, so they are resident: a serving model's memory);
# each activation waits out its run time from the trace (`duration_s`). Waiting rather than
# computing keeps the live replay's cost in scaling (starts, model loads, queueing), not in sharing
# two cores: the simulator is told so (`sleep=True`).
_MODEL_ACTION = '''
import os
import time
from pathlib import Path

import warmwhisk

MODELS_DIR = Path(os.environ.get("WARMWHISK_MODELS_DIR", "/models"))
model = warmwhisk.Model(path=str(MODELS_DIR / "{model}"), name="model")


def touch(module):
    """One value per 4 KiB page of every weight (pages a forward pass would read)."""
    total = 0.0
    for parameter in module.parameters():
        flat = parameter.detach().reshape(-1)
        total += float(flat[:: max(1, 4096 // flat.element_size())].sum())
    return total


TOUCHED = []


def main(args, models):
    seconds = args.get("duration_s", 0) if isinstance(args, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 900:
        raise ValueError('expected {{"duration_s": seconds from 0 to 900}}')
    if not TOUCHED:  # the first activation makes the weights resident, as a first forward would
        TOUCHED.append(touch(models["model"]))
    time.sleep(seconds)
    return {{"slept_s": seconds}}
'''

# What a stock OpenWhisk Python action does with a model folder: import torch, build the module on
# the meta device and load a private copy of the weights (what torch.load does; safetensors'
# load_file alone maps the file copy-on-write, so the copy is made explicit with clone()).
_STOCK_ACTION = """
import importlib.util

import torch
from safetensors.torch import load_file

_spec = importlib.util.spec_from_file_location("model_code", "/models/{model}/model.py")
_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_code)
with torch.device("meta"):
    model = _code.build()
state = {{name: tensor.clone() for name, tensor in load_file("/models/{model}/model.safetensors").items()}}
model.load_state_dict(state, assign=True)
del state
model.eval()


def main(args):
    return {{"parameters": sum(p.numel() for p in model.parameters())}}
"""


def model_action(model: str) -> ActionCode:
    return ActionCode(
        _MODEL_ACTION.format(model=model), "main", f"bench/trace/actions.py: model action ({model})"
    )


def stock_action(model: str) -> ActionCode:
    return ActionCode(
        _STOCK_ACTION.format(model=model), "main", f"bench/trace/actions.py: stock load ({model})"
    )
