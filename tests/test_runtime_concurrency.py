"""Overlapping activations in one container (`__OW_ALLOW_CONCURRENT=true`), black box."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from runtime_harness import RuntimeHandle, wait_until
from warmwhisk_runtime.contract import SENTINEL

CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}
N = 32

# Every activation waits at a barrier of N parties: the barrier only opens if all N runs are in
# flight together, so a runtime that serialised them would answer BrokenBarrierError instead.
BARRIER_ACTION = """
import os, threading, time
barrier = threading.Barrier(int(os.environ["PARTIES"]), timeout=20)

def main(args):
    me = os.environ["__OW_ACTIVATION_ID"]
    print(f"start {me}")
    barrier.wait()
    print(f"middle {me}")
    time.sleep(0.01)
    print(f"end {me}")
    after = os.environ["__OW_ACTIVATION_ID"]
    return {"before": me, "after": after, "getenv": os.getenv("__OW_ACTIVATION_ID"), "n": args["n"]}
"""


def run_many(runtime: RuntimeHandle, bodies: list[dict]) -> list[tuple[int, dict]]:
    """Send every body at once, each on its own connection (like the invoker's pooled client)."""

    def post(body: dict) -> tuple[int, dict]:
        response = requests.post(runtime.url + "/run", json=body, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_32_overlapping_runs_are_in_flight_together_with_isolated_env_and_logs(start_runtime):
    runtime = start_runtime(env={**CONCURRENT, "PARTIES": str(N)})
    assert runtime.init(BARRIER_ACTION)[0] == 200
    bodies = [{"value": {"n": i}, "activation_id": f"act-{i:02d}"} for i in range(N)]
    results = run_many(runtime, bodies)
    for i, (status, result) in enumerate(results):
        me = f"act-{i:02d}"
        assert status == 200, result
        assert result == {"before": me, "after": me, "getenv": me, "n": i}

    out, err = runtime.wait_for_sentinels(N)
    assert err.count(SENTINEL) == N
    # Each activation's lines are written together and end with that activation's sentinel.
    blocks = [b.strip().splitlines() for b in out.split(SENTINEL)[:-1]]
    assert len(blocks) == N
    seen = set()
    for block in blocks:
        ids = {re.match(r"(start|middle|end) (act-\d\d)", line).group(2) for line in block}
        assert len(ids) == 1, f"lines of several activations in one block: {block}"
        (me,) = ids
        assert block == [f"start {me}", f"middle {me}", f"end {me}"]
        seen.add(me)
    assert len(seen) == N


def test_an_exception_and_a_timeout_do_not_disturb_other_activations(start_runtime):
    runtime = start_runtime(env=CONCURRENT)
    source = """
import time
def main(args):
    kind = args["kind"]
    if kind == "raise":
        raise RuntimeError("one bad activation")
    if kind == "spin":          # pure Python: interrupted at the deadline
        while True:
            pass
    if kind == "sleep":         # blocked in C: answered at the deadline, thread ends later
        time.sleep(args["s"])
    time.sleep(0.2)
    return {"ok": args["i"]}
"""
    assert runtime.init(source)[0] == 200
    soon = str(int(time.time() * 1000) + 1500)
    later = str(int(time.time() * 1000) + 60_000)
    bodies = [
        {"value": {"kind": "raise"}, "deadline": later},
        {"value": {"kind": "spin"}, "deadline": soon},
        {"value": {"kind": "sleep", "s": 4}, "deadline": soon},
    ] + [{"value": {"kind": "ok", "i": i}, "deadline": later} for i in range(8)]
    started = time.monotonic()
    results = run_many(runtime, bodies)
    elapsed = time.monotonic() - started

    assert results[0][0] == 200 and "one bad activation" in results[0][1]["error"]
    for status, body in results[1:3]:
        assert status == 200 and "exceeded its time limit" in body["error"]
    assert [r for r in results[3:]] == [(200, {"ok": i}) for i in range(8)]
    assert elapsed < 4, "a timed-out activation held up the others"

    # The spinning thread was interrupted; the sleeping one ends when its sleep does.
    wait_until(lambda: runtime.health()["stuck_threads"] == 0, timeout_s=10, what="stuck threads to end")
    assert runtime.run({"kind": "ok", "i": 99}, deadline=later) == (200, {"ok": 99})
    metrics = runtime.metrics()
    assert 'warmwhisk_errors_total{kind="timeout"} 2.0' in metrics
    assert 'warmwhisk_errors_total{kind="exception"} 1.0' in metrics


def test_runs_beyond_the_cap_wait_for_a_slot(start_runtime):
    runtime = start_runtime(env={**CONCURRENT, "WARMWHISK_MAX_CONCURRENT": "2"})
    source = """
import threading, time
lock = threading.Lock()
state = {"now": 0, "peak": 0}
def main(args):
    with lock:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
    time.sleep(0.1)
    with lock:
        state["now"] -= 1
    return {"peak": state["peak"]}
"""
    assert runtime.init(source)[0] == 200
    results = run_many(runtime, [{"value": {}} for _ in range(6)])
    assert all(status == 200 for status, _ in results)
    assert max(body["peak"] for _, body in results) == 2
