"""The host contract: what the scaler writes into a host's environment is what the runtime reads."""

from __future__ import annotations

import sys

import pytest

from warmwhisk_protocol.host import (
    Env,
    HostLaunch,
    HostSecrets,
    heartbeat_ttl_s,
    model_memory_budget,
    runtime_command,
)
from warmwhisk_runtime.config import load_config


def test_a_launch_environment_is_read_back_by_the_runtime_as_written(tmp_path) -> None:
    launch = HostLaunch(
        host_id="h-1", namespace="guest", actions=("/guest/a@1", "/guest/b@2"), prefix="ww",
        max_concurrent=12, heartbeat_s=0.5, keepalive_s=30, memory_bytes=4 * 1024**3,
    )  # fmt: skip
    secrets = HostSecrets("redis://ww-ns-guest:pw@127.0.0.1:6379/0", "the-token")
    secrets.write(tmp_path / "secrets")
    config = load_config([], {**launch.environment(), Env.SECRETS_FILE: str(tmp_path / "secrets")})
    assert config.mode == "host"
    assert (config.host_id, config.namespace, config.host_actions) == ("h-1", "guest", launch.actions)
    assert config.secrets == secrets and config.redis_prefix == "ww"
    assert not (tmp_path / "secrets").exists()  # read once, then removed
    assert Env.REGISTRY_URL not in launch.environment()  # no credential in the environment
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


def test_a_host_without_its_secrets_or_with_unreadable_ones_does_not_start(tmp_path) -> None:
    env = HostLaunch(host_id="h-1", namespace="guest", actions=("/guest/a@1",)).environment()
    with pytest.raises(SystemExit, match="needs WARMWHISK_SECRETS_FILE"):
        load_config([], env)
    with pytest.raises(SystemExit, match="could not be read and removed"):
        load_config([], {**env, Env.SECRETS_FILE: str(tmp_path / "missing")})
    (tmp_path / "garbage").write_text("not json")
    with pytest.raises(SystemExit, match="is not a host's secrets") as caught:
        load_config([], {**env, Env.SECRETS_FILE: str(tmp_path / "garbage")})
    assert "not json" not in str(caught.value)  # a secrets file's content is never printed
