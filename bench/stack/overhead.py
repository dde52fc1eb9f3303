"""The stack's own time per blocking invocation on a warm container: a stack with one container
(`--stock --no-prewarm`, the trivial action), the same activation sent as a blocking REST call
(`?blocking=true&result=true`) and straight to the container's /run (the body the invoker sends),
alternating in rounds over keep-alive connections, c=1. The difference of the medians is what the
API, the auth, the store and the invoker add."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import requests

from lib.actions import TRIVIAL, TRIVIAL_VALUE
from lib.report import med, pct, rnd
from lib.targets import IMAGE, REPO, DockerEngine, free_port
from stack.config import log
from warmwhisk_devstack.client import StackProcess
from warmwhisk_devstack.stack import stack_id


def timed(call: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def section(args: argparse.Namespace, dock: DockerEngine, tmp: Path) -> dict[str, Any]:
    state_dir = tmp / "overhead" / "state"
    flags = ["--image", IMAGE, "--stock", "--no-prewarm"]
    with StackProcess(free_port(), state_dir, flags, cwd=REPO, labels=dock.labels) as stack:
        client = stack.client()
        client.put_action("echo", {"kind": "python:3-ml", "code": TRIVIAL.code})
        rest = requests.Session()
        rest.auth = tuple(stack.key().split(":", 1))
        url = f"{stack.api_host}/api/v1/namespaces/_/actions/echo?blocking=true&result=true"
        assert rest.post(url, json=TRIVIAL_VALUE, timeout=60).json() == TRIVIAL_VALUE
        [container] = dock.client.containers.list(
            filters={"label": f"warmwhisk.devstack={stack_id(state_dir)}"}
        )
        port = next(e.split("=", 1)[1] for e in container.attrs["Config"]["Env"] if e.startswith("PORT="))
        direct = requests.Session()
        run_url = f"http://127.0.0.1:{port}/run"
        deadline = str(int((time.time() + 3600) * 1000))
        body = json.dumps({
            "value": TRIVIAL_VALUE, "namespace": "guest", "action_name": "/guest/echo",
            "action_version": "0.0.1", "activation_id": "0" * 32, "transaction_id": "0" * 32,
            "deadline": deadline,
        })  # fmt: skip
        headers = {"Content-Type": "application/json"}
        assert direct.post(run_url, data=body, headers=headers, timeout=60).json() == TRIVIAL_VALUE
        rounds = []
        for round_no in range(args.overhead_rounds):
            via_api = timed(lambda: rest.post(url, json=TRIVIAL_VALUE, timeout=60), args.overhead_requests)
            straight = timed(
                lambda: direct.post(run_url, data=body, headers=headers, timeout=60), args.overhead_requests
            )
            rounds.append({"api_p50": med(via_api), "api_p99": pct(via_api, 99), "run_p50": med(straight)})
            api, run = rounds[-1]["api_p50"], rounds[-1]["run_p50"]
            log(f"overhead round {round_no + 1}: API p50 {api:.2f} ms, /run p50 {run:.2f} ms")
    api_p50 = med(r["api_p50"] for r in rounds)
    run_p50 = med(r["run_p50"] for r in rounds)
    return {
        "api_overhead_p50_ms": rnd(med(r["api_p50"] - r["run_p50"] for r in rounds), 3),
        "api_p50_ms": rnd(api_p50, 3),
        "api_p99_ms": rnd(med(r["api_p99"] for r in rounds), 3),
        "run_p50_ms": rnd(run_p50, 3),
        "rounds": len(rounds),
        "requests_per_round": args.overhead_requests,
    }
