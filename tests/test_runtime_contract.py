"""OpenWhisk's action-container contract (../shared/reference/ow-runtime-contract.md), black box.

Every test runs twice: against the runtime as a local process and as a container from the image.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runtime_harness import zip_action
from warmwhisk_runtime.contract import (
    ERR_BAD_VENV,
    ERR_BUSY,
    ERR_EXITED,
    ERR_NO_CODE,
    ERR_NOT_DICT,
    ERR_NOT_INITIALIZED,
    ERR_REINIT,
    ERR_ZIP_NO_MAIN,
    SENTINEL,
)

ECHO = "def main(args):\n    return args\n"


def code(source: str) -> str:
    return textwrap.dedent(source).lstrip()


def strip_sentinels(text: str) -> str:
    return text.replace(SENTINEL, "").strip()


def test_nothing_is_printed_at_start_up(start_runtime):
    runtime = start_runtime()
    time.sleep(0.3)
    assert runtime.logs() == ("", "")


def test_init_then_run_plain_code(start_runtime):
    runtime = start_runtime()
    assert runtime.init(ECHO) == (200, {"ok": True})
    assert runtime.run({"name": "whisk"}) == (200, {"name": "whisk"})
    out, err = runtime.wait_for_sentinels(1)
    # Exactly one sentinel per stream per activation, none for the successful init.
    assert out.count(SENTINEL) == 1 and err.count(SENTINEL) == 1
    assert strip_sentinels(out) == "" and strip_sentinels(err) == ""


def test_second_init_is_refused_with_the_exact_message_and_no_sentinel(start_runtime):
    runtime = start_runtime()
    assert runtime.init(ECHO)[0] == 200
    assert runtime.init(ECHO) == (403, {"error": ERR_REINIT})
    time.sleep(0.2)
    out, err = runtime.logs()
    assert ERR_REINIT in out + err
    assert SENTINEL not in out + err


@pytest.mark.parametrize(
    "body", [{"value": {"code": "", "main": "main"}}, {}], ids=["empty-code", "empty-body"]
)
def test_init_without_code_is_refused(start_runtime, body):
    runtime = start_runtime()
    assert runtime.post("/init", body) == (403, {"error": ERR_NO_CODE})


def test_init_env_is_applied_before_the_code_loads(start_runtime):
    runtime = start_runtime()
    source = code("""
        import os
        SOME_VAR = os.environ["SOME_VAR"]
        EMPTY = os.environ["EMPTY"]
        print("import-time", SOME_VAR)
        def main(args):
            return {"some": SOME_VAR, "empty": EMPTY, "now": os.environ.get("ANOTHER_VAR")}
    """)
    env = {"SOME_VAR": "xyz", "EMPTY": "", "ANOTHER_VAR": 42}
    assert runtime.init(source, env=env)[0] == 200
    assert runtime.run({}) == (200, {"some": "xyz", "empty": "", "now": "42"})
    out, _ = runtime.wait_for_sentinels(1)
    # Import-time output is counted with the first activation: it comes before its sentinel.
    assert out.index("import-time xyz") < out.index(SENTINEL)


def test_custom_entry_point_and_unicode(start_runtime):
    runtime = start_runtime()
    assert (
        runtime.init("def niam(args):\n    return {'greeting': 'héllo ☃ ' + args['n']}\n", main="niam")[0]
        == 200
    )
    assert runtime.run({"n": "日本"}) == (200, {"greeting": "héllo ☃ 日本"})


def test_zip_action_with_modules_relative_files_and_entry_point(start_runtime):
    runtime = start_runtime()
    archive = zip_action({
        "__main__.py": "from helper import shout\n"
                       "def niam(args):\n    return {'text': shout(open('data.txt').read().strip())}\n",
        "helper.py": "def shout(s):\n    return s.upper() + '!'\n",
        "data.txt": "hello from the zip\n",
    })  # fmt: skip
    assert runtime.init(archive, main="niam", binary=True)[0] == 200
    assert runtime.run({}) == (200, {"text": "HELLO FROM THE ZIP!"})


def test_zip_action_with_virtualenv(start_runtime):
    runtime = start_runtime()
    activate = code("""
        import os, sys
        base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path.insert(0, os.path.join(base, "lib", "python3.11", "site-packages"))
    """)
    archive = zip_action({
        "__main__.py": "import vendored\ndef main(args):\n    return {'v': vendored.VERSION}\n",
        "virtualenv/bin/activate_this.py": activate,
        "virtualenv/lib/python3.11/site-packages/vendored.py": "VERSION = '1.2.3'\n",
    })  # fmt: skip
    assert runtime.init(archive, binary=True)[0] == 200
    assert runtime.run({}) == (200, {"v": "1.2.3"})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"main.py": ECHO}, ERR_ZIP_NO_MAIN),
        ({"__main__.py": ECHO, "virtualenv/bin/python": "x"}, ERR_BAD_VENV),
    ],
    ids=["no-main", "bad-virtualenv"],
)
def test_broken_zip_fails_init_with_details_and_one_sentinel_pair(start_runtime, files, message):
    runtime = start_runtime()
    status, body = runtime.init(zip_action(files), binary=True)
    assert status == 502 and message in body["error"]
    out, err = runtime.wait_for_sentinels(1)
    assert message in err
    assert out.count(SENTINEL) == 1 and err.count(SENTINEL) == 1


@pytest.mark.parametrize(
    ("source", "in_error", "in_stderr"),
    [
        ("def main(args) return {}\n", "SyntaxError", "Traceback"),
        ("import no_such_module_here\ndef main(a):\n    return a\n", "ModuleNotFoundError", "Traceback"),
        ("import sys\nsys.exit(3)\n", "sys.exit", "SystemExit"),
        ("def other(args):\n    return args\n", "has no function 'main'", "has no function 'main'"),
    ],
    ids=["syntax-error", "missing-module", "exit-at-import", "no-entry-point"],
)
def test_init_failures_answer_502_with_a_precise_error(start_runtime, source, in_error, in_stderr):
    runtime = start_runtime()
    status, body = runtime.init(source)
    assert status == 502 and in_error in body["error"]
    _, err = runtime.wait_for_sentinels(1)
    assert in_stderr in err
    assert runtime.alive()


def test_run_edge_cases_missing_value_arrays_and_one_megabyte(start_runtime):
    runtime = start_runtime()
    assert runtime.init(ECHO)[0] == 200
    assert runtime.post("/run", {}) == (200, {})
    assert runtime.run([1, "two", {"three": 3}]) == (200, [1, "two", {"three": 3}])
    big = "x" * 1_048_561  # the size OpenWhisk's own test kit sends
    assert runtime.run({"big": big}) == (200, {"big": big})


def test_activation_context_reaches_os_environ_and_getenv(start_runtime):
    runtime = start_runtime(env={"__OW_API_HOST": "https://whisk.example"})
    source = code("""
        import os
        def main(args):
            keys = ["API_HOST", "API_KEY", "NAMESPACE", "ACTION_NAME", "ACTION_VERSION", "ACTIVATION_ID",
                    "TRANSACTION_ID", "DEADLINE", "FUTURE_KEY"]
            return {k: [os.environ.get("__OW_" + k), os.getenv("__OW_" + k)] for k in keys}
    """)
    assert runtime.init(source)[0] == 200
    deadline = str(int(time.time() * 1000) + 60_000)
    context = {
        "api_key": "uuid:key", "namespace": "ns", "action_name": "/ns/pkg/act", "action_version": "0.0.1",
        "activation_id": "a1", "transaction_id": "t1", "deadline": deadline, "future_key": "f",
    }  # fmt: skip
    status, result = runtime.run({}, **context)
    assert status == 200
    expected = {key.upper(): [value, value] for key, value in context.items()}
    expected["API_HOST"] = ["https://whisk.example"] * 2
    assert result == expected


def test_exception_in_main_is_an_application_error_and_the_container_survives(start_runtime):
    runtime = start_runtime()
    source = code("""
        def main(args):
            if args.get('fail'):
                raise ValueError('bad input value')
            return args
    """)
    assert runtime.init(source)[0] == 200
    status, body = runtime.run({"fail": True})
    assert status == 200 and "ValueError: bad input value" in body["error"]
    assert runtime.run({"ok": 1}) == (200, {"ok": 1})
    _, err = runtime.wait_for_sentinels(2)
    assert "Traceback" in err and "bad input value" in err


@pytest.mark.parametrize("result", ["'a string'", "42", "None", "(1, 2)"])
def test_result_that_is_not_an_object_or_array(start_runtime, result):
    runtime = start_runtime()
    assert runtime.init(f"def main(args):\n    return {result}\n")[0] == 200
    assert runtime.run({}) == (502, {"error": ERR_NOT_DICT})
    out, err = runtime.wait_for_sentinels(1)
    assert strip_sentinels(out) == "" and strip_sentinels(err) == ""


def test_result_that_is_not_json_is_a_clear_error(start_runtime):
    runtime = start_runtime()
    assert runtime.init("def main(args):\n    return {'s': {1, 2}, 'nan': float('nan')}\n")[0] == 200
    status, body = runtime.run({})
    assert status == 200 and "not valid JSON" in body["error"]


def test_sys_exit_in_main_is_reported_and_the_runtime_stays_up(start_runtime):
    runtime = start_runtime()
    assert (
        runtime.init(
            "import sys\ndef main(args):\n    if args.get('exit'):\n        sys.exit(2)\n    return args\n"
        )[0]
        == 200
    )
    assert runtime.run({"exit": True}) == (400, {"error": ERR_EXITED})
    assert runtime.run({"x": 1}) == (200, {"x": 1})
    _, err = runtime.wait_for_sentinels(2)
    assert "sys.exit(2)" in err


def test_run_before_init(start_runtime):
    runtime = start_runtime()
    assert runtime.run({}) == (403, {"error": ERR_NOT_INITIALIZED})


def test_overlapping_run_is_refused_without_allow_concurrent(start_runtime):
    runtime = start_runtime()
    assert (
        runtime.init("import time\ndef main(args):\n    time.sleep(args.get('s', 0))\n    return args\n")[0]
        == 200
    )
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.update(r=runtime.run({"s": 1.0})))
    thread.start()
    time.sleep(0.3)
    import requests  # a second connection, like a second invoker request

    response = requests.post(runtime.url + "/run", json={"value": {}}, timeout=10)
    assert (response.status_code, response.json()) == (403, {"error": ERR_BUSY})
    thread.join()
    assert slow["r"] == (200, {"s": 1.0})
    out, err = runtime.wait_for_sentinels(1)
    time.sleep(0.2)
    out, err = runtime.logs()
    assert out.count(SENTINEL) == 1 and err.count(SENTINEL) == 1  # only the accepted run


def _readable_dir() -> Path:
    """A folder the image's non-root user can read when it is mounted into the container."""
    path = Path(tempfile.mkdtemp(prefix="warmwhisk-test-"))
    path.chmod(0o755)
    return path


def test_baked_in_handler_serves_an_init_without_code(start_runtime):
    folder = _readable_dir()
    try:
        handler = folder / "handler.py"
        handler.write_text("def predict(args):\n    return {'baked': True, **args}\n")
        handler.chmod(0o644)
        runtime = start_runtime(
            env={"WARMWHISK_HANDLER": "/opt/handler/handler.py:predict"}
            if start_runtime.kind == "container"
            else {"WARMWHISK_HANDLER": f"{handler}:predict"},
            volumes={str(folder): {"bind": "/opt/handler", "mode": "ro"}},
        )
        # What the invoker sends for `wsk action create x --docker image` with no file.
        assert runtime.post("/init", {"value": {"name": "x", "main": "main", "binary": False}})[0] == 200
        assert runtime.run({"a": 1}) == (200, {"baked": True, "a": 1})
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_health_and_metrics_on_their_own_port(start_runtime):
    runtime = start_runtime()
    assert runtime.health()["initialized"] is False
    assert (
        runtime.init(
            "def main(args):\n    if 'boom' in args:\n        raise RuntimeError()\n    return args\n"
        )[0]
        == 200
    )
    for _ in range(3):
        runtime.run({})
    runtime.run({"boom": 1})
    health = runtime.health()
    assert health["initialized"] is True and health["status"] == "ok"
    metrics = runtime.metrics()
    assert 'warmwhisk_activations_total{outcome="success"} 3.0' in metrics
    assert 'warmwhisk_errors_total{kind="exception"} 1.0' in metrics
    assert "warmwhisk_activation_seconds_count 4.0" in metrics
    assert "warmwhisk_in_flight 0.0" in metrics
    # The action port does not expose them.
    for path in ("/healthz", "/metrics"):
        assert runtime.session.get(runtime.url + path, timeout=5).status_code == 404


@pytest.mark.slow
def test_init_accepts_a_48_megabyte_zip(start_runtime):
    runtime = start_runtime()
    archive = zip_action({"__main__.py": ECHO, "weights.bin": os.urandom(48 * 1000 * 1000 - 4096)})
    assert len(archive) > 60_000_000  # about 64 MB of base64, as the invoker sends it
    assert runtime.init(archive, binary=True, timeout=120)[0] == 200
    assert runtime.run({"k": "v"}) == (200, {"k": "v"})
