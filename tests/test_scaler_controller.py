"""The control loop against real Redis and real model hosts, as local processes and as containers
on the real Docker engine: scale from zero on a burst, adoption after a scaler restart, two
replicas, a Redis restart, manual scale, and a host container killed while it serves."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from runtime_harness import IMAGE, TEST_LABELS, wait_until
from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, without_credential
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_scaler.backends import DockerBackend, ProcessBackend
from warmwhisk_scaler.controller import Controller, ControlLoop
from warmwhisk_scaler.credentials import NamespaceCredentials
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_scaler.registries import RedisRegistries
from warmwhisk_scaler.settings import ScalerSettings
from warmwhisk_scaler.state import RedisLease, RedisScalerStore

ACTION = "import time\ndef main(args):\n    time.sleep(0.2)\n    return {'n': args.get('n')}\n"


def settings(redis_url: str, state_dir: Path) -> ScalerSettings:
    return ScalerSettings(
        redis_url=redis_url, host_redis_url=redis_url, token="t", backend="process", tick_s=0.2,
        heartbeat_s=0.2, window_s=2.0, state_dir=str(state_dir), start_timeout_s=30.0,
    )  # fmt: skip


Loop = ControlLoop  # one replica: a controller ticking in a thread


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def scaler(request, redis_server, tmp_path) -> Iterator[dict]:
    config = settings(redis_server.url, tmp_path / "hosts")
    owner = f"warmwhisk-test-{secrets.token_hex(3)}"
    backend: ProcessBackend | DockerBackend
    if request.param == "docker":
        client = request.getfixturevalue("docker_client")
        backend = DockerBackend(client, IMAGE, owner=owner, extra_labels=TEST_LABELS,
                                secrets_dir=tmp_path / "host-secrets")  # fmt: skip
    else:
        backend = ProcessBackend(state_dir=config.state_dir, owner=owner)
    client = redis_server.client()
    credentials = NamespaceCredentials(client, RedisKeys())
    registries = RedisRegistries(client, RedisKeys(), credentials, config.heartbeat_ttl_s)
    registries.maintain()
    store = RedisScalerStore(client, RedisKeys())
    parts = {"settings": config, "backend": backend, "registries": registries, "store": store,
             "loops": [], "client": client, "registry": registries.registry("guest"),
             "credentials": credentials}  # fmt: skip
    yield parts
    for loop in parts["loops"]:
        loop.stop()
    backend.reconcile(lambda host: False)  # stop every host process


def start_loop(scaler: dict, holder: str) -> Loop:
    lease = RedisLease(scaler["client"], RedisKeys(), holder, scaler["settings"].lease_ttl_s)
    controller = Controller(
        scaler["registries"], scaler["backend"], scaler["settings"], lease, scaler["store"]
    )
    loop = Loop(controller)
    scaler["loops"].append(loop)
    return loop


def routed_action(start_process_runtime, redis_server, scaler: dict) -> tuple:
    """A routed container (no password in its registry address) initialised with the action and
    its namespace's credential, as OpenWhisk would with the invoker patch."""
    address = without_credential(redis_server.url)
    router = start_process_runtime(env={"WARMWHISK_MODE": "routed", "WARMWHISK_MAX_CONCURRENT": "256",
                                        "WARMWHISK_ROUTER_URL": address})  # fmt: skip
    credential = scaler["credentials"].issue("guest").encode()
    env = {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/slow", CREDENTIAL_PARAMETER: credential}
    assert router.init(ACTION, env=env)[0] == 200
    (key,) = scaler["registry"].registered_actions()
    return router, key


def settled_hosts(scaler: dict) -> set[str]:
    """Once every host the backend runs is warm in the registry: their ids."""
    registry, backend = scaler["registry"], scaler["backend"]

    def settled() -> bool:
        warm = {h.host_id for h in registry.hosts() if h.state == "warm"}
        return bool(warm) and warm == {h.host_id for h in backend.running()}

    wait_until(settled, timeout_s=30, what="every started host to turn warm")
    return {h.host_id for h in backend.running()}


def burst(router, count: int) -> list[tuple[int, dict]]:
    deadline = str(int(time.time() * 1000) + 60_000)

    def one(n: int) -> tuple[int, dict]:
        response = requests.post(
            router.url + "/run", json={"value": {"n": n}, "deadline": deadline}, timeout=90
        )
        return response.status_code, response.json()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_a_burst_of_200_from_zero_hosts_is_all_answered(start_process_runtime, redis_server, scaler):
    registry = scaler["registry"]
    router, key = routed_action(start_process_runtime, redis_server, scaler)
    start_loop(scaler, "replica-a")
    started = time.monotonic()
    results = burst(router, 200)
    elapsed = time.monotonic() - started
    assert [r for r in results if r[0] != 200 or "error" in r[1]] == []
    assert sorted(r[1]["n"] for r in results) == list(range(200))
    hosts = registry.hosts()
    print(f"200 activations from zero hosts: {elapsed:.1f} s, {len(hosts)} hosts")
    assert 1 <= len(hosts) <= 100
    assert registry.pool_stats(key).completed == 200


def test_a_restarted_scaler_adopts_the_running_hosts(start_process_runtime, redis_server, scaler):
    registry = scaler["registry"]
    router, _ = routed_action(start_process_runtime, redis_server, scaler)
    first = start_loop(scaler, "replica-a")
    burst(router, 20)
    before = settled_hosts(scaler)
    first.stop()  # releases the lease
    second = start_loop(scaler, "replica-b")
    wait_until(
        lambda: second.controller.is_leader and second.controller.ticks > 3, timeout_s=10, what="takeover"
    )
    assert {h.host_id for h in registry.hosts()} == before  # adopted: none orphaned, none duplicated
    assert {h.host_id for h in scaler["backend"].running()} == before


def test_two_replicas_exactly_one_decides(start_process_runtime, redis_server, scaler):
    registry = scaler["registry"]
    router, _ = routed_action(start_process_runtime, redis_server, scaler)
    loops = [start_loop(scaler, "replica-a"), start_loop(scaler, "replica-b")]
    burst(router, 20)
    leaders = [loop.controller.is_leader for loop in loops]
    assert leaders.count(True) == 1
    follower = loops[leaders.index(False)].controller
    assert follower.ticks == 0
    deciders = {entry for entry in registry.redis.lrange(RedisKeys().decisions, 0, -1) if b'"by"' in entry}
    assert all(loops[leaders.index(True)].controller.holder_id.encode() in entry for entry in deciders)


def test_after_a_redis_restart_the_registry_is_rebuilt_without_duplicate_hosts(
    start_process_runtime, redis_server, scaler
):
    registry = scaler["registry"]
    router, _ = routed_action(start_process_runtime, redis_server, scaler)
    loop = start_loop(scaler, "replica-a")
    burst(router, 20)
    before = settled_hosts(scaler)
    redis_server.restart()
    interval = scaler["settings"].heartbeat_s
    wait_until(lambda: {h.host_id for h in registry.hosts()} == before, timeout_s=2 * interval + 1.0,
               what="hosts to re-register")  # fmt: skip
    results = burst(router, 20)  # the router re-registers the action; the hosts serve it
    assert all(status == 200 and "error" not in body for status, body in results), results
    assert {h.host_id for h in scaler["backend"].running()} == before
    assert loop.controller.is_leader


def test_manual_scale_pins_the_host_count(redis_server, scaler, start_process_runtime):
    registry = scaler["registry"]
    _, key = routed_action(start_process_runtime, redis_server, scaler)
    scaler["store"].save_pool_config(key, PoolConfig(manual_hosts=2))
    start_loop(scaler, "replica-a")
    wait_until(lambda: len([h for h in registry.hosts() if h.state == "warm"]) == 2, timeout_s=20,
               what="two warm hosts")  # fmt: skip
    scaler["store"].save_pool_config(key, replace(PoolConfig(), manual_hosts=0))
    wait_until(lambda: registry.hosts() == [] and scaler["backend"].running() == [], timeout_s=20,
               what="the hosts to drain and stop")  # fmt: skip


def kill_host(request, scaler: dict, host_id: str) -> None:
    """SIGKILL a host as its engine would see a crash: the container, or the process group."""
    backend = scaler["backend"]
    if isinstance(backend, DockerBackend):
        request.getfixturevalue("docker_client").containers.get(host_id).kill()
    else:
        os.killpg(backend._read(host_id).pid, signal.SIGKILL)


def test_a_host_killed_while_serving_is_retried_and_replaced(
    request, start_process_runtime, redis_server, scaler
):
    registry = scaler["registry"]
    router, key = routed_action(start_process_runtime, redis_server, scaler)
    scaler["store"].save_pool_config(key, PoolConfig(manual_hosts=2))
    start_loop(scaler, "replica-a")
    wait_until(lambda: len([h for h in registry.hosts() if h.state == "warm"]) == 2, timeout_s=60,
               what="two warm host containers")  # fmt: skip
    answers: dict = {}
    thread = threading.Thread(target=lambda: answers.update(r=burst(router, 1)[0]))
    thread.start()
    wait_until(lambda: any(h.slots_in_use for h in registry.hosts()), what="the run to take a slot")
    (busy,) = [h.host_id for h in registry.hosts() if h.slots_in_use]
    kill_host(request, scaler, busy)  # SIGKILL while it serves
    thread.join(timeout=60)
    status, body = answers["r"]
    assert status == 200 and body == {"n": 0}, body  # retried once on the other host
    # The dead host expires, and the pinned pool is brought back to two warm hosts.
    wait_until(lambda: busy not in {h.host_id for h in registry.hosts()}
               and len([h for h in registry.hosts() if h.state == "warm"]) == 2, timeout_s=60,
               what="a replacement host")  # fmt: skip
