"""Section 1, registry: bench_registry.py, run as it is: its table relayed, its JSON summary returned."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from scaler.config import log

ENTRY = Path(__file__).resolve().parent.parent / "bench_registry.py"


def section(args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, str(ENTRY)]
    argv += ["--requests", "1000", "--warmup", "200", "--rounds", "1"] if args.quick else []
    log(f"registry: {' '.join(argv[1:])}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_registry.py exited {done.returncode}: {done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    print("\n## 1. Registry: slot acquire + release on loopback Redis (bench/bench_registry.py)")
    for line in lines[:-1]:
        print(f"  {line}")
    return summary
