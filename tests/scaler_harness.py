"""The scaler under test: its settings over a test Redis, a fake host heartbeat, and
`warmwhisk-scaler` as a process started the way the README documents it (secrets in files)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from runtime_harness import wait_until
from warmwhisk_protocol.forwarding import ActionSpec
from warmwhisk_protocol.records import HostRecord
from warmwhisk_protocol.registry import RedisRegistry
from warmwhisk_scaler.service import Service, build
from warmwhisk_scaler.settings import ScalerSettings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CODE = "def main(a):\n    return a\n"
SPEC = {"namespace": "guest", "name": "echo", "main": "main", "binary": False, "code": CODE, "env": {}}
ACTION = ActionSpec.from_json(SPEC).key("/guest/echo")  # hosts load only a registration matching its key


def scaler_settings(redis_url: str, state_dir: Path, **changes: Any) -> ScalerSettings:
    settings = ScalerSettings(
        redis_url=redis_url, host_redis_url=redis_url, token=TOKEN, backend="process", tick_s=0.2,
        heartbeat_s=0.2, window_s=2.0, start_timeout_s=30.0, state_dir=str(state_dir),
    )  # fmt: skip
    return dataclasses.replace(settings, **changes)


def guest_registry(service: Service) -> RedisRegistry:
    """The registry of namespace ``guest``, which the scaler serves once it has a credential."""
    service.registries.credentials.issue("guest")
    return service.registries.registry("guest")


def served_scaler(redis_url: str, state_dir: Path, max_hosts: int) -> Iterator[Service]:
    """A scaler service (not started) with the guest's action registered; stopped after (a
    fixture body: `yield from served_scaler(...)`)."""
    built = build(scaler_settings(redis_url, state_dir, max_hosts=max_hosts))
    guest_registry(built).register_action(ACTION, SPEC)
    yield built
    built.stop()


def fake_host(service: Service, host_id: str = "h-fake", limit: int = 4, **fields: Any) -> HostRecord:
    """A heartbeat as a warm host serving ACTION would send it (no process behind it); ``fields``
    set more of the record (e.g. its ``token``)."""
    record = HostRecord(
        host_id=host_id, address="127.0.0.1:9", namespace="guest", actions=(ACTION,), models=(),
        state="warm", limit=limit, **fields,
    )  # fmt: skip
    assert guest_registry(service).heartbeat(record)
    return record


def scaler_process(redis_url: str, port: int, state_dir: Path, *flags: str) -> subprocess.Popen[bytes]:
    """The console script `make setup` installs, as an operator types it: the Redis URL and the
    token in files (so neither shows in `ps`), the process backend, a 0.2 s tick."""
    secrets = state_dir.parent / f"secrets-{port}"
    secrets.mkdir(mode=0o700, parents=True)
    url_file, token_file = secrets / "redis-url", secrets / "token"
    for path, value in ((url_file, redis_url), (token_file, TOKEN)):
        path.write_text(f"{value}\n")
        path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMWHISK_")}
    env.update(WARMWHISK_SCALER_STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1")
    command = [str(Path(sys.executable).with_name("warmwhisk-scaler")), "--backend", "process",
               "--redis-url-file", str(url_file), "--token-file", str(token_file), "--port", str(port),
               "--tick", "0.2", *flags]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_healthy(process: subprocess.Popen[bytes], base: str, timeout_s: float = 20) -> None:
    """Until the scaler at ``base`` answers /healthz with Redis up (fails if the process exits)."""

    def healthy() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            return requests.get(f"{base}/healthz", timeout=1).json() == {"status": "ok", "redis": True}
        except requests.ConnectionError:
            return False

    wait_until(healthy, timeout_s=timeout_s, what="the scaler's /healthz")


def finish(process: subprocess.Popen[bytes], timeout_s: float = 30) -> tuple[int, str]:
    """Wait for the process to exit (killed after ``timeout_s``): its status and stderr."""
    try:
        _, err = process.communicate(timeout=timeout_s)
    finally:
        stop(process)
    return process.returncode, err.decode(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the process if it still runs (a test's clean-up)."""
    if process.poll() is None:
        process.kill()
        process.communicate()
