"""Which deadlines are enforced: only a number still in the future when the request arrives.

OpenWhisk's own runtime test kit (BasicActionRunnerTests "confirm expected environment
variables", and its concurrency tests) sends context such as `"deadline": "123"` and expects the
action to run and see `__OW_DEADLINE=123`. A deadline already past on arrival, or not a number,
in /run's context or /init's env, does not stop the run; it is still the action's
`__OW_DEADLINE`. A future deadline is enforced (the activation is answered at it).
"""

from __future__ import annotations

import time

import pytest

from warmwhisk_runtime.contract import deadline_ms

NOW_MS = 1_800_000_000_000.0

ENV_ACTION = """
import os, time
AT_IMPORT = os.environ.get("__OW_DEADLINE")
def main(args):
    if args.get("spin"):
        while True:
            pass
    time.sleep(args.get("s", 0))
    return {"deadline": os.environ.get("__OW_DEADLINE"), "at_import": AT_IMPORT}
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------------------ unit: contract
@pytest.mark.parametrize(
    ("raw", "enforced"),
    [
        ("", None),
        ("123", None),  # OpenWhisk's test kit
        ("not a number", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        (str(NOW_MS - 1), None),
        (str(NOW_MS), None),
        (str(NOW_MS + 1), NOW_MS + 1),
        (f"{NOW_MS + 1500.5}", NOW_MS + 1500.5),
    ],
)
def test_only_a_future_number_is_a_deadline(raw, enforced):
    context = {"__OW_DEADLINE": raw} if raw else {}
    assert deadline_ms(context, NOW_MS) == enforced


# ------------------------------------------------------------------------------------- /run
def test_the_test_kits_context_runs_and_is_seen_as_it_was_sent(start_runtime):
    runtime = start_runtime(env={"__OW_API_HOST": "xyz"})
    source = """
import os
def main(args):
    keys = ["API_HOST", "API_KEY", "NAMESPACE", "ACTION_NAME", "ACTION_VERSION", "ACTIVATION_ID", "DEADLINE"]
    return {k: os.environ.get("__OW_" + k) for k in keys}
"""
    assert runtime.init(source)[0] == 200
    # BasicActionRunnerTests "confirm expected environment variables".
    context = {
        "api_key": "abc", "namespace": "zzz", "action_name": "xxx", "action_version": "0.0.1",
        "activation_id": "iii", "deadline": "123",
    }  # fmt: skip
    status, result = runtime.run({}, **context)
    assert status == 200
    assert result == {"API_HOST": "xyz", **{key.upper(): value for key, value in context.items()}}


@pytest.mark.parametrize("kind", ["123", "number-123", "not-a-number", "past"])
def test_a_deadline_past_or_not_a_number_does_not_stop_the_run(start_runtime, kind):
    runtime = start_runtime()
    assert runtime.init(ENV_ACTION)[0] == 200
    deadline = {
        "123": "123",
        "number-123": 123,  # a JSON number: __OW_DEADLINE is its text
        "not-a-number": "tomorrow",
        "past": str(_now_ms() - 10_000),
    }[kind]
    status, result = runtime.run({"s": 0.3}, deadline=deadline)
    assert (status, result["deadline"]) == (200, str(deadline))


def test_a_future_deadline_is_enforced_and_seen(start_runtime):
    runtime = start_runtime()
    assert runtime.init(ENV_ACTION)[0] == 200
    later = str(_now_ms() + 60_000)
    assert runtime.run({}, deadline=later) == (200, {"deadline": later, "at_import": None})
    soon = str(_now_ms() + 800)
    started = time.monotonic()
    status, body = runtime.run({"spin": True}, deadline=soon)
    assert status == 200 and f"__OW_DEADLINE={soon}" in body["error"]
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------ /init
@pytest.mark.parametrize("kind", ["123", "not-a-number", "past"])
def test_an_init_deadline_past_or_not_a_number_does_not_stop_the_init(start_runtime, kind):
    runtime = start_runtime()
    deadline = {"123": "123", "not-a-number": "whenever", "past": str(_now_ms() - 10_000)}[kind]
    # Loading takes a moment: an enforced deadline in the past would stop it.
    source = "import time\ntime.sleep(0.3)\n" + ENV_ACTION
    assert runtime.init(source, env={"__OW_DEADLINE": deadline}) == (200, {"ok": True})
    status, result = runtime.run({})
    assert status == 200 and result["at_import"] == deadline
