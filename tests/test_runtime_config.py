"""The runtime's configuration: flags over environment, defaults, and clear refusals."""

from __future__ import annotations

import pytest

from warmwhisk_runtime.config import MIB, load_config


def test_defaults_are_openwhisks_port_and_one_run_at_a_time() -> None:
    config = load_config([], {})
    assert (config.host, config.port, config.metrics_port, config.mode) == ("0.0.0.0", 8080, 8081, "direct")
    assert not config.concurrent and config.server_threads == 1 + 4
    assert config.max_body_bytes == 64 * MIB and config.keepalive_s == 75
    assert config.model_memory_bytes > 0


def test_the_invoker_turns_concurrency_on_and_flags_win_over_the_environment() -> None:
    config = load_config(["--port", "9000"], {"PORT": "7000", "__OW_ALLOW_CONCURRENT": "true",
                                              "WARMWHISK_MAX_CONCURRENT": "16"})  # fmt: skip
    assert config.port == 9000 and config.concurrent and config.server_threads == 16 + 4
    assert load_config([], {"PORT": "7000"}).port == 7000
    assert not load_config([], {"__OW_ALLOW_CONCURRENT": "yes"}).concurrent  # only "true" counts


def test_routers_and_hosts_are_always_concurrent() -> None:
    env = {"WARMWHISK_MODE": "routed", "WARMWHISK_ROUTER_URL": "redis://:p@127.0.0.1:6379/0"}
    config = load_config([], env)
    assert config.mode == "routed" and config.concurrent


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WARMWHISK_MAX_CONCURRENT": "many"}, "WARMWHISK_MAX_CONCURRENT must be an integer"),
        ({"WARMWHISK_MAX_CONCURRENT": "0"}, "WARMWHISK_MAX_CONCURRENT must be >= 1"),
        ({"WARMWHISK_MODE": "turbo"}, "WARMWHISK_MODE must be one of"),
        ({"WARMWHISK_MODE": "routed"}, "needs WARMWHISK_ROUTER_URL"),
        ({"WARMWHISK_MODE": "host", "WARMWHISK_ROUTER_URL": "redis://x"}, "needs WARMWHISK_HOST_ID"),
        ({"WARMWHISK_HEARTBEAT_S": "0"}, "WARMWHISK_HEARTBEAT_S must be a positive number"),
        ({"WARMWHISK_HEARTBEAT_S": "soon"}, "WARMWHISK_HEARTBEAT_S must be a number"),
        ({"WARMWHISK_METRICS_PORT": "-1"}, "WARMWHISK_METRICS_PORT must be >= 0"),
    ],
)
def test_bad_settings_stop_the_runtime_with_a_message_naming_the_variable(env: dict, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        load_config([], env)


def test_lists_and_the_advertised_address() -> None:
    config = load_config(["--port", "8088"], {"WARMWHISK_PRELOAD": "/models/a, /models/b,",
                                              "WARMWHISK_HOST_ACTIONS": "k1,k2"})  # fmt: skip
    assert config.preload == ("/models/a", "/models/b") and config.host_actions == ("k1", "k2")
    assert config.advertise == "127.0.0.1:8088"
