"""Bad input gets a clear error, and the runtime stays up where the contract says it should."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_harness import ProcessRuntime, zip_action
from warmwhisk_runtime.contract import ContractError, init_fields, parse_json_object, run_fields

ECHO = "def main(args):\n    return args\n"

# /init bodies the runtime must refuse with 400 without consuming its one init.
BAD_INIT_BODIES = [
    b"{not json",
    b"\xff\xfe\x00",
    b"",
    b"[1, 2]",
    b'"a string"',
    b'{"value": "code"}',
    b'{"value": {"code": 42}}',
    b'{"value": {"code": "x", "binary": "yes"}}',
    b'{"value": {"code": "x", "main": 7}}',
    b'{"value": {"code": "x", "main": "not an identifier"}}',
    b'{"value": {"code": "x", "env": ["A=1"]}}',
    b'{"value": {"code": "x", "env": {"A=B": "1"}}}',
    b'{"value": {"code": "x", "name": {}}}',
]
BAD_RUN_BODIES = [
    b"{not json",
    b"null",
    b"[]",
    b'{"value": "scalar"}',
    b'{"value": 3}',
    b'{"value": {"x": Infinity}}',
    b'{"value": [NaN]}',
]


def test_malformed_bodies_get_400_and_lose_nothing(start_runtime):
    runtime = start_runtime()
    for raw in BAD_INIT_BODIES:
        status, body = runtime.post("/init", raw)
        assert status == 400 and body["error"], raw
    assert runtime.init(ECHO)[0] == 200  # the one init was not consumed
    for raw in BAD_RUN_BODIES:
        status, body = runtime.post("/run", raw)
        assert status == 400 and body["error"], raw
    assert runtime.run({"still": "up"}) == (200, {"still": "up"})
    assert runtime.post("/nope", {})[0] == 404
    assert runtime.session.get(runtime.url + "/run", timeout=5).status_code == 405


def test_oversized_bodies_get_413(start_process_runtime):
    runtime = start_process_runtime(env={"WARMWHISK_MAX_BODY_BYTES": str(1024 * 1024)})
    assert runtime.init(ECHO)[0] == 200
    status, body = runtime.run({"big": "x" * (2 * 1024 * 1024)})
    assert status == 413 and "larger than 1048576 bytes" in body["error"]
    assert runtime.run({"small": 1}) == (200, {"small": 1})


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("////", "not a zip file"),
        (base64.b64encode(b"definitely not a zip").decode(), "not a zip file"),
        (zip_action({"../escape.py": ECHO, "__main__.py": ECHO}), "Unsafe path"),
        (zip_action({"/abs.py": ECHO, "__main__.py": ECHO}), "Unsafe path"),
    ],
    ids=["bad-bytes", "not-zip", "zip-slip", "absolute-path"],
)
def test_invalid_base64_or_zip_fails_init_clearly(start_process_runtime, code, message):
    runtime = start_process_runtime()
    status, body = runtime.init(code, binary=True)
    assert status == 502 and message in body["error"]
    assert runtime.alive()


def test_zip_bomb_is_refused(start_process_runtime):
    runtime = start_process_runtime(env={"WARMWHISK_MAX_ZIP_BYTES": "1000000"})
    status, body = runtime.init(zip_action({"__main__.py": ECHO, "big": b"\0" * 2_000_000}), binary=True)
    assert status == 502 and "more than 1000000 bytes" in body["error"]


def test_init_that_never_returns_is_stopped_at_its_deadline(start_process_runtime):
    runtime = start_process_runtime()
    deadline = str(int(time.time() * 1000) + 1000)
    status, body = runtime.init("while True:\n    pass\n", env={"__OW_DEADLINE": deadline})
    assert status == 502 and "before its deadline" in body["error"]
    assert runtime.alive()


def test_a_deadline_already_past_on_arrival_is_not_enforced(start_process_runtime):
    # OpenWhisk's own test kit sends placeholders such as "123" (test_runtime_deadlines.py).
    runtime = start_process_runtime()
    assert runtime.init("import time\ndef main(a):\n    time.sleep(0.5)\n    return a\n")[0] == 200
    assert runtime.run({"ran": 1}, deadline=str(int(time.time() * 1000) - 10)) == (200, {"ran": 1})


# ------------------------------------------------------------------------------------- fuzzing
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
run_bodies = st.dictionaries(
    st.sampled_from(["value", "activation_id", "deadline", "namespace", "api_key", "other"])
    | st.text(max_size=8),
    json_values,
    max_size=5,
)
FUZZ = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def echo_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRuntime]:
    """One initialized runtime for a whole fuzz run (hypothesis calls a test many times)."""
    runtime = ProcessRuntime(tmp_path_factory.mktemp("echo"))
    runtime.wait_ready()
    assert runtime.init(ECHO)[0] == 200
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def fresh_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRuntime]:
    """One runtime that must stay uninitialized through a whole fuzz run."""
    runtime = ProcessRuntime(tmp_path_factory.mktemp("fresh"))
    runtime.wait_ready()
    yield runtime
    runtime.stop()


@FUZZ
@given(body=run_bodies)
def test_fuzz_run_bodies(echo_runtime, body):
    status, result = echo_runtime.post("/run", json.dumps(body))
    value = body.get("value")
    if value is None:
        value = {}
    # Whatever its deadline (none, past, not a number: not enforced; future: the echo is quicker).
    if isinstance(value, (dict, list)):
        assert (status, result) == (200, value)
    else:
        assert status == 400 and isinstance(result["error"], str)


init_values = st.dictionaries(
    st.sampled_from(["code", "main", "binary", "env", "name"]), json_values, max_size=5
).filter(lambda v: _invalid_init(v))


@FUZZ
@given(
    body=st.one_of(
        json_values.filter(lambda v: not isinstance(v, dict)), st.builds(lambda v: {"value": v}, init_values)
    )
)
def test_fuzz_init_bodies_are_refused_without_consuming_the_init(fresh_runtime, body):
    status, result = fresh_runtime.post("/init", json.dumps(body))
    assert status == 400 and isinstance(result["error"], str)
    assert fresh_runtime.health()["initialized"] is False


@settings(max_examples=500)
@given(body=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_fuzz_contract_parsers_only_raise_contract_errors(body):
    for parse in (init_fields, run_fields):
        try:
            parse(body)
        except ContractError as exc:
            assert exc.status == 400 and exc.message
    with pytest.raises(ContractError):
        parse_json_object(json.dumps(body).encode()[:-1], "x")


# -- helpers -----------------------------------------------------------------------------------
def _invalid_init(value: dict) -> bool:
    """True when init_fields must refuse this `value` (so the fuzz never initialises)."""
    try:
        init_fields({"value": value})
    except ContractError:
        return True
    return False
