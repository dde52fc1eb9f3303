"""The runtime's background work starts with the worker and stops on shutdown: heartbeat and
assigned-action loading (host mode), preloading and the metrics port (`server.Service`)."""

from __future__ import annotations

import threading
import time

import requests

from runtime_harness import free_port, wait_until
from warmwhisk_protocol.forwarding import ActionSpec
from warmwhisk_protocol.memory import InMemoryRegistry
from warmwhisk_runtime.config import load_config
from warmwhisk_runtime.hosting import Heartbeat, HostedActions, HostIdentity, HostState
from warmwhisk_runtime.modes import HostMode
from warmwhisk_runtime.server import Service

SPEC = ActionSpec("guest", "echo", "main", False, "def main(a):\n    return a\n")
KEY = SPEC.key("/guest/echo")


def named_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_host_mode_heartbeats_loads_its_actions_and_stops_both() -> None:
    registry = InMemoryRegistry(heartbeat_ttl_s=0.3)
    loaded: list[str] = []
    hosted = HostedActions(registry, "guest", lambda key, spec: loaded.append(key) or (lambda *a: None))

    def state() -> HostState:
        return HostState(actions=hosted.keys(), models=[], in_flight=0, memory_bytes=0, model_load_s=None)

    identity = HostIdentity("h1", "127.0.0.1:1", "guest", 4, (KEY,), keepalive_s=75.0, token="t")
    mode = HostMode(hosted, Heartbeat(registry, identity, state, 0.05), (KEY,), 0.05, token="t")
    mode.start()
    assert [r.state for r in registry.hosts()] == ["starting"]  # its action is not registered yet
    registry.register_action(KEY, SPEC.to_json())  # e.g. a router puts it back
    wait_until(lambda: [r.state for r in registry.hosts()] == ["warm"], timeout_s=5, what="warm")
    assert loaded == [KEY]
    mode.stop()
    assert named_threads("heartbeat") == [] and named_threads("host-actions") == []
    time.sleep(0.4)  # past the record's TTL: nothing heartbeats any more
    assert registry.hosts() == []


def test_the_service_stops_preloading_and_its_metrics_port(tmp_path) -> None:
    port = free_port()
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    config = load_config(["--metrics-host", "127.0.0.1", "--metrics-port", str(port)],
                         {"WARMWHISK_PRELOAD": str(folder)})  # fmt: skip
    import os
    import sys

    saved = sys.stdout, sys.stderr, os.environ
    try:
        service = Service.build(config)
        service.start()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["mode"] == "direct"
        service.close()
        assert service.preload is not None and not service.preload.is_alive()
        assert named_threads("metrics") == []
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            raise AssertionError("the metrics port still answers after close()")
        except requests.ConnectionError:
            pass
    finally:  # Service.build installs per-activation streams and environ process-wide
        sys.stdout, sys.stderr, os.environ = saved
