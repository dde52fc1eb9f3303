"""Routed mode and host mode: activations forwarded to warm model hosts through the registry."""

from __future__ import annotations

import threading
import time

import pytest

from routed_harness import RoutedStack
from runtime_harness import wait_until
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


@pytest.fixture
def stack(start_process_runtime, redis_server, tmp_path) -> RoutedStack:
    return RoutedStack(start_process_runtime, redis_server, tmp_path)


@pytest.fixture
def registry(stack) -> RedisRegistry:
    return stack.registry()


def warm_hosts(registry: RedisRegistry) -> list[str]:
    return [h.host_id for h in registry.hosts() if h.state == "warm"]


def test_routed_runs_are_served_by_a_warm_host_with_logs_and_sentinels_at_the_router(stack, registry):
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    (key,) = registry.registered_actions()
    assert key.startswith("/guest/echo@")
    model_host = stack.host(key, "h1")
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


def test_without_a_host_a_run_gets_a_clear_error_at_its_deadline(stack):
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    started = time.monotonic()
    status, body = router.run({}, deadline=str(int(time.time() * 1000) + 800))
    assert status == 200 and "no warm model host had a free slot" in body["error"]
    assert 0.7 < time.monotonic() - started < 3


def test_a_host_killed_while_serving_is_retried_once_on_another(stack, registry):
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    (key,) = registry.registered_actions()
    hosts = {name: stack.host(key, name) for name in ("h1", "h2")}
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


def test_a_host_serves_only_its_own_namespace_and_only_with_its_token(stack, registry):
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    (key,) = registry.registered_actions()
    stranger = stack.host(key, "h-other", namespace="someone-else")
    time.sleep(1.0)
    assert warm_hosts(registry) == []  # it could not load the action, so it never turned warm

    def forward(headers: dict[str, str]) -> tuple[int, dict]:
        response = stranger.session.post(stranger.url + "/run", json={"value": {}}, headers=headers)
        return response.status_code, response.json()

    status, body = forward({"X-Warmwhisk-Action": key})  # no token: anyone on the network
    assert status == 401 and "X-Warmwhisk-Host-Token" in body["error"]
    status, body = forward({"X-Warmwhisk-Action": key, "X-Warmwhisk-Host-Token": "guessed"})
    assert status == 401
    token = {"X-Warmwhisk-Host-Token": stack.tokens["h-other"]}
    status, body = forward(token)
    assert status == 400 and "X-Warmwhisk-Action" in body["error"]
    status, body = forward({**token, "X-Warmwhisk-Action": key})  # its router's, for another namespace
    assert status == 403 and "another namespace" in body["error"]


def test_a_host_refuses_a_registration_that_does_not_match_its_key(stack, registry, redis_server):
    """Whoever rewrote a registration (a leaked namespace credential, an operator's mistake), a host
    loads only the code its key names."""
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    (key,) = registry.registered_actions()
    tampered = {**registry.action_spec(key), "code": "def main(args):\n    return {'pwned': True}\n"}
    registry.register_action(key, tampered)
    host = stack.host(key, "h1")
    headers = {"X-Warmwhisk-Action": key, "X-Warmwhisk-Host-Token": stack.tokens["h1"]}
    response = host.session.post(host.url + "/run", json={"value": {}}, headers=headers)
    assert response.status_code == 403 and "does not match its key" in response.json()["error"]
    assert warm_hosts(registry) == []
