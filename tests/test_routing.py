"""Routed mode and host mode: activations forwarded to warm model hosts through the registry."""

from __future__ import annotations

import threading
import time

import pytest

from runtime_harness import RuntimeHandle, wait_until
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import RedisRegistry
from warmwhisk_runtime.contract import SENTINEL

ACTION = """
import os, time
print("imported on the host")

def main(args):
    time.sleep(args.get("sleep", 0))
    print("serving", os.environ["__OW_ACTIVATION_ID"])
    return {"pid": os.getpid(), "echo": args.get("x"), "id": os.environ["__OW_ACTIVATION_ID"]}
"""
INIT_ENV = {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/echo", "__OW_ACTIVATION_ID": "init-1"}


def routed(start, redis_server) -> RuntimeHandle:
    return start(env={"WARMWHISK_MODE": "routed", "WARMWHISK_ROUTER_URL": redis_server.url})


def host(start, redis_server, key: str, host_id: str, namespace: str = "guest") -> RuntimeHandle:
    return start(env={
        "WARMWHISK_MODE": "host", "WARMWHISK_ROUTER_URL": redis_server.url, "WARMWHISK_HOST_ID": host_id,
        "WARMWHISK_NAMESPACE": namespace, "WARMWHISK_HOST_ACTIONS": key, "WARMWHISK_HEARTBEAT_S": "0.2",
    })  # fmt: skip


@pytest.fixture
def registry(redis_server) -> RedisRegistry:
    return RedisRegistry(redis_server.client(), RedisKeys(), heartbeat_ttl_s=0.6)


def warm_hosts(registry: RedisRegistry) -> list[str]:
    return [h.host_id for h in registry.hosts() if h.state == "warm"]


def test_routed_runs_are_served_by_a_warm_host_with_logs_and_sentinels_at_the_router(
    start_process_runtime, redis_server, registry
):
    router = routed(start_process_runtime, redis_server)
    assert router.init(ACTION, env=INIT_ENV)[0] == 200
    (key,) = registry.registered_actions()
    assert key.startswith("/guest/echo@")
    model_host = host(start_process_runtime, redis_server, key, "h1")
    wait_until(lambda: warm_hosts(registry) == ["h1"], timeout_s=15, what="the host to turn warm")

    status, result = router.run({"x": 7}, activation_id="a-1")
    assert status == 200 and result["echo"] == 7 and result["id"] == "a-1"
    assert result["pid"] != router.health()["pid"]
    out, _ = router.wait_for_sentinels(1)
    assert "serving a-1" in out and out.index("serving a-1") < out.index(SENTINEL)
    host_out, _ = model_host.logs()
    assert SENTINEL not in host_out and "serving a-1" not in host_out  # the logs travelled back
    stats = registry.pool_stats(key)
    assert stats.completed == 1 and registry.hosts()[0].slots_in_use == 0


def test_without_a_host_a_run_gets_a_clear_error_at_its_deadline(start_process_runtime, redis_server):
    router = routed(start_process_runtime, redis_server)
    assert router.init(ACTION, env=INIT_ENV)[0] == 200
    started = time.monotonic()
    status, body = router.run({}, deadline=str(int(time.time() * 1000) + 800))
    assert status == 200 and "no warm model host had a free slot" in body["error"]
    assert 0.7 < time.monotonic() - started < 3


def test_a_host_killed_while_serving_is_retried_once_on_another(
    start_process_runtime, redis_server, registry
):
    router = routed(start_process_runtime, redis_server)
    assert router.init(ACTION, env=INIT_ENV)[0] == 200
    (key,) = registry.registered_actions()
    hosts = {name: host(start_process_runtime, redis_server, key, name) for name in ("h1", "h2")}
    wait_until(lambda: warm_hosts(registry) == ["h1", "h2"], timeout_s=15, what="two warm hosts")

    answer: dict = {}
    thread = threading.Thread(
        target=lambda: answer.update(r=router.run({"sleep": 1.0, "x": 1}, activation_id="a-2"))
    )
    thread.start()
    wait_until(lambda: any(h.slots_in_use for h in registry.hosts()), what="the run to take a slot")
    (busy,) = [h.host_id for h in registry.hosts() if h.slots_in_use]
    hosts[busy].kill()  # SIGKILL while it serves
    thread.join(timeout=15)
    status, result = answer["r"]
    assert status == 200 and result.get("echo") == 1, result
    wait_until(
        lambda: busy not in [h.host_id for h in registry.hosts()], timeout_s=5, what="the dead host to expire"
    )


def test_a_host_serves_only_its_own_namespace(start_process_runtime, redis_server, registry):
    router = routed(start_process_runtime, redis_server)
    assert router.init(ACTION, env=INIT_ENV)[0] == 200
    (key,) = registry.registered_actions()
    stranger = host(start_process_runtime, redis_server, key, "h-other", namespace="someone-else")
    time.sleep(1.0)
    assert warm_hosts(registry) == []  # it could not load the action, so it never turned warm
    status, body = stranger.post("/run", {"value": {}})
    assert status == 400 and "X-Warmwhisk-Action" in body["error"]
    response = stranger.session.post(
        stranger.url + "/run", json={"value": {}}, headers={"X-Warmwhisk-Action": key}
    )
    assert response.status_code == 403 and "another namespace" in response.json()["error"]
