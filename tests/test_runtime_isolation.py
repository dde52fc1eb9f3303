"""Per-activation isolation inside one process (isolation.py): `__OW_*` and logs."""

from __future__ import annotations

import io

from warmwhisk_runtime.contract import SENTINEL
from warmwhisk_runtime.isolation import (
    Activation,
    ActivationEnviron,
    ActivationLog,
    LogSink,
    RoutedStream,
    current_action_env,
    current_activation,
)


def in_activation(env: dict[str, str], fn):  # type: ignore[no-untyped-def]
    token = current_activation.set(Activation(env=env, log=ActivationLog(limit=1000)))
    try:
        return fn()
    finally:
        current_activation.reset(token)


def test_ow_keys_belong_to_the_running_activation_and_the_rest_to_the_process() -> None:
    real = {"PATH": "/bin", "__OW_API_HOST": "https://ow", "__OW_ACTIVATION_ID": "from-init"}
    environ = ActivationEnviron(real, masked={"__OW_ACTIVATION_ID", "__OW_DEADLINE"})
    # Outside any activation (a thread the action started): no activation's context, even if the
    # process environment had one.
    assert environ.get("__OW_ACTIVATION_ID") is None
    seen = in_activation({"__OW_ACTIVATION_ID": "a-1"}, lambda: dict(environ))
    assert seen == {"PATH": "/bin", "__OW_API_HOST": "https://ow", "__OW_ACTIVATION_ID": "a-1"}
    # A masked key this activation does not have is hidden, not the /init activation's value.
    assert in_activation({}, lambda: environ.get("__OW_ACTIVATION_ID")) is None
    assert in_activation({}, lambda: "__OW_API_HOST" in environ)  # unmasked container settings stay


def test_writes_go_to_the_activation_and_never_leak_into_another() -> None:
    real: dict[str, str] = {}
    environ = ActivationEnviron(real, masked=set())
    env_a: dict[str, str] = {}
    in_activation(env_a, lambda: environ.__setitem__("__OW_NOTE", "a"))
    assert env_a == {"__OW_NOTE": "a"} and "__OW_NOTE" not in real
    assert in_activation({}, lambda: environ.get("__OW_NOTE")) is None
    in_activation({}, lambda: environ.__setitem__("PLAIN", "x"))  # not __OW_*: process-wide
    assert real == {"PLAIN": "x"}


def test_an_activation_log_is_capped_and_says_so_and_closes() -> None:
    log = ActivationLog(limit=10)
    assert log.append("stdout", "0123456789abc")
    texts = log.close()
    assert texts["stdout"].startswith("0123456789\n[warmwhisk] log truncated at 10 characters")
    assert texts["stderr"] == ""
    assert log.append("stdout", "late") is False  # a thread outliving its activation


def test_streams_route_to_the_activation_and_the_sink_writes_blocks_with_sentinels() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = LogSink(out, err)
    stdout = RoutedStream(sink, "stdout")
    stdout.write("outside\n")
    activation = Activation(env={}, log=ActivationLog(limit=100))
    token = current_activation.set(activation)
    stdout.write("inside")
    current_activation.reset(token)
    assert out.getvalue() == "outside\n"
    sink.emit(activation.log)
    assert out.getvalue() == f"outside\ninside\n{SENTINEL}\n"
    assert err.getvalue() == f"{SENTINEL}\n"


def test_an_actions_init_parameters_are_its_own_in_host_mode() -> None:
    """Two actions in one process: each sees its own parameters, never the other's; the process
    environment holds neither."""
    real = {"PATH": "/bin"}
    environ = ActivationEnviron(real, masked=set())
    one, two = {"GREETING": "one"}, {"GREETING": "two", "SECRET": "two's"}

    def as_action(env: dict[str, str], fn):  # type: ignore[no-untyped-def]
        token = current_action_env.set(env)
        try:
            return fn()
        finally:
            current_action_env.reset(token)

    assert as_action(one, lambda: (environ.get("GREETING"), environ.get("SECRET"))) == ("one", None)
    assert as_action(two, lambda: dict(environ)) == {"PATH": "/bin", "GREETING": "two", "SECRET": "two's"}
    as_action(one, lambda: environ.__setitem__("NOTE", "written by one"))
    assert one["NOTE"] == "written by one" and "NOTE" not in real and "NOTE" not in two
    assert environ.get("GREETING") is None  # outside both actions
