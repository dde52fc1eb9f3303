"""Faults on a model host, as an operator would meet them: a model file rewritten in place under a
host container using it (not replaced by rename, as the README asks) ends that host (SIGBUS), the
activation in flight gets a clear error and the registry drops the host; the scaler process stops
on SIGTERM within its deadline even while every host start fails."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from redis_harness import free_loopback_port
from routed_harness import ROUTED_ENV
from runtime_harness import IMAGE, TEST_LABELS, wait_until, write_model_folder
from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, with_credential, without_credential
from warmwhisk_protocol.host import HostLaunch, HostSecrets
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import RedisRegistry, load_scripts
from warmwhisk_scaler.backends.base import HostSpec
from warmwhisk_scaler.backends.docker_backend import DockerBackend
from warmwhisk_scaler.credentials import NamespaceCredentials

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODEL_PY = """
import torch

def build():
    return torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)])
"""
ACTION = """
import time, torch, warmwhisk
mlp = warmwhisk.Model("/models/mlp", name="mlp")

def main(args, models):
    end = time.monotonic() + args.get("seconds", 0)
    with torch.no_grad():
        while True:  # a long inference, reading the weights all the while
            total = float(models["mlp"](torch.ones(1, 512)).sum())
            if time.monotonic() >= end:
                return {"sum": total}
"""


def test_a_model_file_rewritten_in_place_ends_the_host_and_the_registry_drops_it(
    start_process_runtime, redis_server, docker_client, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir(mode=0o755)
    folder = write_model_folder(models / "mlp", MODEL_PY)
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)
    keys = RedisKeys()
    credentials = NamespaceCredentials(redis_server.client(), keys)
    load_scripts(redis_server.client())
    registry = RedisRegistry(redis_server.client(), keys.namespace("guest"), heartbeat_ttl_s=1.5)
    address = without_credential(redis_server.url)
    router = start_process_runtime(env={**ROUTED_ENV, "WARMWHISK_ROUTER_URL": address})
    init_env = {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/mlp",
                CREDENTIAL_PARAMETER: credentials.issue("guest").encode()}  # fmt: skip
    assert router.init(ACTION, env=init_env)[0] == 200
    (key,) = registry.registered_actions()
    backend = DockerBackend(docker_client, IMAGE, owner=f"warmwhisk-test-{secrets.token_hex(3)}",
                            extra_labels=TEST_LABELS, secrets_dir=tmp_path / "host-secrets")  # fmt: skip
    try:
        launch = HostLaunch(host_id="h-model", namespace="guest", actions=(key,), heartbeat_s=0.5)
        url = with_credential(redis_server.url, credentials.issue("guest"))
        backend.start(HostSpec("h-model", key, launch.environment(), 1024**3, str(models),
                               secrets=HostSecrets(url, secrets.token_urlsafe(16))))  # fmt: skip
        wait_until(lambda: [h.state for h in registry.hosts()] == ["warm"], timeout_s=60, what="a warm host")
        status, body = router.run({})
        assert status == 200 and "sum" in body, body

        answer: dict = {}
        deadline = str(int((time.time() + 15) * 1000))  # the router waits for another host until then
        run = lambda: answer.update(r=router.run({"seconds": 10}, deadline=deadline))  # noqa: E731
        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: any(h.slots_in_use for h in registry.hosts()), what="the long run to start")
        time.sleep(1.0)
        with open(folder / "model.safetensors", "r+b") as file:  # rewritten in place, not renamed
            file.truncate(0)  # the pages the host maps are gone: its next read of them is a SIGBUS
        thread.join(timeout=60)
        status, body = answer["r"]
        assert status == 200 and "model host h-model failed" in body["error"], body  # not a hang
        container = docker_client.containers.get("h-model")
        wait_until(lambda: (container.reload(), container.status)[1] == "exited", timeout_s=30,
                   what="the host container to exit")  # fmt: skip
        assert container.attrs["State"]["ExitCode"] != 0  # gone for good: no second life, no second /init
        wait_until(lambda: registry.hosts() == [], timeout_s=10, what="the registry to drop the host")
    finally:
        backend.reconcile(lambda host: False)


def test_the_scaler_stops_on_sigterm_within_its_deadline_while_every_start_fails(
    redis_server, tmp_path: Path
) -> None:
    """A Docker backend whose image does not exist: every tick's starts fail (and back off); SIGTERM
    must still end the process within the stop deadline."""
    client = redis_server.client()
    credentials = NamespaceCredentials(client, RedisKeys())
    credentials.issue("guest")
    registry = RedisRegistry(client, RedisKeys().namespace("guest"))
    registry.register_action("/guest/a@0", {"namespace": "guest"})
    client.set(RedisKeys().pool_config("/guest/a@0"), '{"manual_hosts": 50, "knobs": {}, "policy": null}')
    url_file, token_file = tmp_path / "url", tmp_path / "token"
    url_file.write_text(redis_server.url)
    token_file.write_text("t0ken-for-the-test")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("warmwhisk-scaler")), "--redis-url-file", str(url_file),
         "--token-file", str(token_file), "--backend", "docker", "--image", "warmwhisk/no-such-image:never",
         "--port", str(free_loopback_port()), "--tick", "0.05"],
        env={k: v for k, v in os.environ.items() if not k.startswith("WARMWHISK_")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: client.llen(RedisKeys().decisions) >= 3, timeout_s=30, what="failing ticks")
        entries = client.lrange(RedisKeys().decisions, 0, -1)
        assert all(b"starting a host failed" in e for e in entries)  # one entry per failing tick
        assert any(b"in a row" in e for e in entries)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
        assert time.monotonic() - started < 35  # gunicorn's graceful timeout is 30 s; the loop ends first
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
