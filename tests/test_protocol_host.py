"""The host contract: what the scaler writes into a host's environment is what the runtime reads."""

from __future__ import annotations

import sys

from warmwhisk_protocol.host import (
    Env,
    HostLaunch,
    heartbeat_ttl_s,
    model_memory_budget,
    runtime_command,
)
from warmwhisk_runtime.config import load_config


def test_a_launch_environment_is_read_back_by_the_runtime_as_written() -> None:
    launch = HostLaunch(
        host_id="h-1", namespace="guest", actions=("/guest/a@1", "/guest/b@2"),
        registry_url="redis://:pw@127.0.0.1:6379/0", prefix="ww", max_concurrent=12, heartbeat_s=0.5,
        keepalive_s=30, memory_bytes=4 * 1024**3,
    )  # fmt: skip
    config = load_config([], launch.environment())
    assert config.mode == "host"
    assert (config.host_id, config.namespace, config.host_actions) == ("h-1", "guest", launch.actions)
    assert (config.router_url, config.redis_prefix) == (launch.registry_url, "ww")
    assert (config.max_concurrent, config.heartbeat_s, config.keepalive_s) == (12, 0.5, 30)
    assert config.model_memory_bytes == 3 * 1024**3  # 3/4 of the host's memory
    assert config.heartbeat_ttl_s == heartbeat_ttl_s(0.5) == 1.5
    assert set(launch.environment()) <= Env.names()


def test_the_model_budget_and_the_command_line() -> None:
    assert model_memory_budget(1000) == 750
    command = runtime_command(sys.executable, 8080, 8081)
    assert command == [sys.executable, "-m", "warmwhisk_runtime", "--host", "127.0.0.1", "--port", "8080",
                       "--metrics-port", "8081"]  # fmt: skip
    config = load_config(command[3:], {})
    assert (config.host, config.port, config.metrics_port) == ("127.0.0.1", 8080, 8081)
