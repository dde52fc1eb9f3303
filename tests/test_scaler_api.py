"""The scaler's HTTP API and its wiring, against a real password-protected redis-server.

Most tests speak to the Flask app through its test client, over a ``Service`` whose control loop is
not started: a test calls ``controller.step()`` itself where it needs the loop to act. Model hosts
are real local processes (``ProcessBackend``). The last tests run ``warmwhisk-scaler`` as a
subprocess, secrets in files: gunicorn, the loop in the worker, the lease released on SIGTERM.
Bounds and request bodies have their own files (``test_scaler_bounds.py``,
``test_scaler_bodies.py``); ``scaler_harness.py`` holds what they share.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from redis_harness import free_loopback_port
from runtime_harness import wait_until
from scaler_harness import (
    ACTION,
    AUTH,
    CODE,
    SPEC,
    TOKEN,
    fake_host,
    finish,
    guest_registry,
    scaler_process,
    scaler_settings,
    stop,
    wait_healthy,
)
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_scaler.api import create_app
from warmwhisk_scaler.service import Service, build

PROTECTED = [
    ("GET", "/status"),
    ("GET", "/hosts"),
    ("GET", "/actions"),
    ("GET", "/decisions"),
    ("POST", "/scale"),
    ("GET", f"/pools/{ACTION}/config"),
    ("PUT", f"/pools/{ACTION}/config"),
    ("GET", "/metrics"),
    ("GET", "/no-such-endpoint"),
]


@pytest.fixture
def service(redis_server, tmp_path: Path) -> Iterator[Service]:
    built = build(scaler_settings(redis_server.url, tmp_path / "hosts"))
    yield built
    built.backend.reconcile(lambda host: False)  # stop every host process it started
    built.stop()


@pytest.fixture
def client(service: Service) -> FlaskClient:
    return create_app(service).test_client()


def pool_entry(status: dict[str, Any], pool: str = ACTION) -> dict[str, Any]:
    (entry,) = [p for p in status["pools"] if p["pool"] == pool]
    return entry


# -- health and authentication ----------------------------------------------------------------------


def test_healthz_needs_no_token_and_reports_whether_redis_answers(client, redis_server):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok", "redis": True}

    redis_server.stop()
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok", "redis": False}
    answer = client.get("/status", headers=AUTH)
    assert answer.status_code == 503 and "Redis is unavailable" in answer.get_json()["error"]
    metrics = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "warmwhisk_scaler_redis_up 0.0" in metrics


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_but_healthz_needs_the_bearer_token(client, method, path):
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ):
        answer = client.open(path, method=method, headers=headers, json={})
        assert answer.status_code == 401, (headers, answer.get_data(as_text=True))
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.is_json and answer.get_json()["error"]


# -- reads -------------------------------------------------------------------------------------------


def test_status_hosts_actions_and_metrics_read_the_registry(service, client):
    registry = guest_registry(service)
    registry.register_action(ACTION, SPEC)
    fake_host(service)
    first, _second = registry.acquire(ACTION), registry.acquire(ACTION)
    assert first is not None
    registry.release(first, duration_s=0.05)
    registry.start_waiting(ACTION, "w-1", time.time() + 60)
    assert service.controller.step()  # takes the lease (one tick: nothing to change yet)

    status = client.get("/status", headers=AUTH).get_json()
    replica = service.controller.holder_id
    assert status["replica"] == replica and status["leader"] == replica and status["is_leader"] is True
    assert status["epoch"] and status["controller"]["ticks"] == 1
    entry = pool_entry(status)
    assert entry["hosts"] == {"starting": 0, "warm": 1, "draining": 0}
    assert (entry["slots_in_use"], entry["waiting"], entry["acquired"], entry["completions"]) == (1, 1, 2, 1)
    assert entry["policy"] == "hybrid" and entry["manual_hosts"] is None

    (host,) = client.get("/hosts", headers=AUTH).get_json()["hosts"]
    assert host["host_id"] == "h-fake" and host["actions"] == [ACTION] and host["state"] == "warm"
    assert host["slots_in_use"] == 1 and host["limit"] == 4

    (action,) = client.get("/actions", headers=AUTH).get_json()["actions"]
    assert action["action"] == ACTION and action["waiting"] == 1
    assert "code" not in action["spec"] and action["spec"]["code_bytes"] == len(CODE)
    assert "env" not in action["spec"] and action["spec"]["env_names"] == []
    assert action["spec"]["namespace"] == "guest" and action["spec"]["main"] == "main"
    assert action["stats"]["completed"] == 1 and action["stats"]["mean_duration_ms"] == pytest.approx(50)

    answer = client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    label = f'pool="{ACTION}"'
    for line in (
        f'warmwhisk_scaler_hosts{{{label},state="warm"}} 1.0',
        f'warmwhisk_scaler_hosts{{{label},state="draining"}} 0.0',
        f"warmwhisk_scaler_slots_in_use{{{label}}} 1.0",
        f"warmwhisk_scaler_waiting{{{label}}} 1.0",
        f"warmwhisk_scaler_completions_total{{{label}}} 1.0",
        f"warmwhisk_scaler_acquired_total{{{label}}} 2.0",
        f'warmwhisk_scaler_is_leader{{replica="{replica}"}} 1.0',
        "warmwhisk_scaler_redis_up 1.0",
    ):
        assert line in text.splitlines(), line

    # A second replica over the same Redis answers the same reads, but it is not the leader.
    other = build(service.settings)
    try:
        other_status = create_app(other).test_client().get("/status", headers=AUTH).get_json()
        assert other_status["is_leader"] is False and other_status["leader"] == replica
        assert pool_entry(other_status)["hosts"]["warm"] == 1
    finally:
        other.stop()


def test_reads_show_parameter_names_and_never_a_secret(service, client, redis_server):
    """Init parameters (often API keys), a host's token, the code, the Redis password and the
    bearer token appear in no answer: /actions lists parameter names only."""
    secrets = {"API_KEY": "sk-live-0123456789", "DB_PASSWORD": "hunter2-but-longer"}
    code = "SECRET_IN_CODE = 'c0de-secret'\n" + CODE
    guest_registry(service).register_action(ACTION, {**SPEC, "code": code, "env": secrets})
    fake_host(service, token="host-token-9876543210")
    assert service.controller.step()

    (action,) = client.get("/actions", headers=AUTH).get_json()["actions"]
    assert action["spec"] == {
        "namespace": "guest", "name": "echo", "main": "main", "binary": False,
        "code_bytes": len(code.encode()), "env_names": ["API_KEY", "DB_PASSWORD"],
    }  # fmt: skip
    (host,) = client.get("/hosts", headers=AUTH).get_json()["hosts"]
    assert "token" not in host and host["host_id"] == "h-fake"
    hidden = [*secrets.values(), "c0de-secret", "host-token-9876543210", redis_server.password, TOKEN]
    for path in ("/actions", "/status", "/hosts", "/decisions", "/metrics", f"/pools/{ACTION}/config"):
        answer = client.get(path, headers=AUTH)
        assert answer.status_code == 200, path
        text = answer.get_data(as_text=True)
        assert not [secret for secret in hidden if secret in text], (path, text)
        if answer.is_json:  # escaped forms too (JSON may write "/" or non-ASCII escaped)
            dumped = json.dumps(answer.get_json())
            assert not [secret for secret in hidden if secret in dumped], path


# -- manual scale through the control loop, with a real host process ---------------------------------


@pytest.mark.slow
def test_manual_scale_starts_a_host_then_drains_and_stops_it(service, client):
    registry, controller = guest_registry(service), service.controller
    registry.register_action(ACTION, SPEC)
    answer = client.put(f"/pools/{ACTION}/config", headers=AUTH, json={"manual_hosts": 1})
    assert answer.status_code == 200 and answer.get_json()["config"]["manual_hosts"] == 1

    assert controller.step()
    (started,) = service.backend.running()
    assert controller.status()["starting"] == [started.host_id] and started.pool == ACTION

    def warm() -> bool:
        controller.step()
        return [h.host_id for h in registry.hosts() if h.state == "warm"] == [started.host_id]

    wait_until(warm, timeout_s=30, what="the host to heartbeat warm")
    wait_until(lambda: controller.step() and not controller.status()["starting"], what="the loop to see it")
    (decision,) = client.get("/decisions", headers=AUTH).get_json()["decisions"]
    assert decision["kind"] == "add_hosts" and decision["pool"] == ACTION and decision["count"] == 1
    assert "manual" in decision["reason"] and decision["by"] == controller.holder_id
    entry = pool_entry(client.get("/status", headers=AUTH).get_json())
    assert entry["hosts"]["warm"] == 1 and entry["manual_hosts"] == 1

    answer = client.post("/scale", headers=AUTH, json={"pool": ACTION, "hosts": 0})
    assert answer.status_code == 200 and answer.get_json()["config"]["manual_hosts"] == 0

    def gone() -> bool:
        controller.step()
        return not service.backend.running() and not registry.hosts()

    wait_until(gone, timeout_s=20, what="the host to drain and stop")
    newest = client.get("/decisions?limit=1", headers=AUTH).get_json()["decisions"]
    assert [d["kind"] for d in newest] == ["remove_hosts"] and newest[0]["host_ids"] == [started.host_id]
    assert len(client.get("/decisions", headers=AUTH).get_json()["decisions"]) == 2

    answer = client.post("/scale", headers=AUTH, json={"pool": ACTION, "hosts": None})
    assert answer.get_json()["config"]["manual_hosts"] is None
    assert client.get(f"/pools/{ACTION}/config", headers=AUTH).get_json()["config"]["manual_hosts"] is None


# -- validation ----------------------------------------------------------------------------------------


def test_pool_configuration_is_validated_and_stored(service, client):
    guest_registry(service).register_action(ACTION, SPEC)
    url = f"/pools/{ACTION}/config"
    assert client.get(url, headers=AUTH).get_json() == {
        "pool": ACTION,
        "config": {"policy": None, "knobs": {}, "manual_hosts": None},
        "effective_policy": "hybrid",
    }
    bad = [
        ({"policy": "fastest"}, "unknown policy 'fastest'"),
        ({"knobs": {"warp_factor": 9}}, "no knobs ['warp_factor']"),
        ({"policy": "kpa", "knobs": {"min_throughput_gain": 0.1}}, "no knobs ['min_throughput_gain']"),
        ({"knobs": [1]}, "knobs must be a JSON object"),
        ({"manual_hosts": -1}, "manual_hosts"),
        ({"manual_hosts": "2"}, "manual_hosts"),
        ({"manual_hosts": True}, "manual_hosts"),
        ({"hosts": 2}, "unknown fields ['hosts']"),
    ]
    for body, message in bad:
        answer = client.put(url, headers=AUTH, json=body)
        assert answer.status_code == 400 and message in answer.get_json()["error"], (body, answer.get_json())
    for raw in (b"", b"{", b"[1]", b'{"manual_hosts": NaN}', b"\xff"):
        answer = client.put(url, headers=AUTH, data=raw, content_type="application/json")
        assert answer.status_code == 400 and "JSON object" in answer.get_json()["error"], raw

    body = {"policy": "kpa", "knobs": {"stable_window_s": 30.0}, "manual_hosts": None}
    answer = client.put(url, headers=AUTH, json=body)
    assert answer.status_code == 200 and answer.get_json()["config"] == body
    assert answer.get_json()["effective_policy"] == "kpa"
    assert client.get(url, headers=AUTH).get_json()["config"] == body
    # The action key's own leading slash may also be percent-encoded.
    encoded = "/pools/" + ACTION.replace("/", "%2F").replace("@", "%40") + "/config"
    assert client.get(encoded, headers=AUTH).get_json()["config"] == body

    unknown = client.put("/pools//guest/other@1/config", headers=AUTH, json={"manual_hosts": 1})
    assert unknown.status_code == 404 and "unknown pool" in unknown.get_json()["error"]
    assert client.get("/pools//guest/other@1/config", headers=AUTH).status_code == 404


def test_knobs_of_a_pool_without_its_own_policy_must_fit_the_default_policy(redis_server, tmp_path):
    built = build(scaler_settings(redis_server.url, tmp_path, policy="kpa"))
    try:
        guest_registry(built).register_action(ACTION, SPEC)
        client = create_app(built).test_client()
        # Hybrid knobs with no policy named would make the kpa loop fail on every tick.
        answer = client.put(f"/pools/{ACTION}/config", headers=AUTH, json={"knobs": {"initial_limit": 4}})
        assert answer.status_code == 400 and "kpa has no knobs" in answer.get_json()["error"]
    finally:
        built.stop()


def test_scale_and_decisions_reject_bad_requests_with_json_errors(service, client):
    guest_registry(service).register_action(ACTION, SPEC)
    bad = [
        ({"hosts": 1}, 400, "pool must be a non-empty string"),
        ({"pool": 7, "hosts": 1}, 400, "pool must be a non-empty string"),
        ({"pool": ACTION}, 400, "hosts is required"),
        ({"pool": ACTION, "hosts": "2"}, 400, "hosts must be a whole number"),
        ({"pool": ACTION, "hosts": -1}, 400, "hosts must be a whole number"),
        ({"pool": ACTION, "hosts": 1.5}, 400, "hosts must be a whole number"),
        ({"pool": ACTION, "hosts": True}, 400, "hosts must be a whole number"),
        ({"pool": ACTION, "hosts": 1, "force": True}, 400, "unknown fields ['force']"),
        ({"pool": "/guest/nothing@1", "hosts": 1}, 404, "unknown pool"),
    ]
    for body, status, message in bad:
        answer = client.post("/scale", headers=AUTH, json=body)
        assert answer.status_code == status and message in answer.get_json()["error"], (body, answer.json)
    answer = client.post("/scale", headers=AUTH, data="hosts=1", content_type="text/plain")
    assert answer.status_code == 400 and "JSON object" in answer.get_json()["error"]
    answer = client.post("/scale", headers=AUTH, json=[ACTION, 1])
    assert answer.status_code == 400 and "got list" in answer.get_json()["error"]
    answer = client.post("/scale", headers=AUTH, data=b"{" * (80 * 1024))
    assert answer.status_code == 413 and answer.is_json

    for query in ("limit=0", "limit=1001", "limit=ten", "limit="):
        answer = client.get(f"/decisions?{query}", headers=AUTH)
        assert answer.status_code == 400, query
        assert "limit must be a whole number from 1 to 1000" in answer.get_json()["error"]
    assert client.get("/decisions?limit=1000", headers=AUTH).get_json() == {"decisions": []}

    answer = client.get("/scale", headers=AUTH)
    assert answer.status_code == 405 and "POST" in answer.headers["Allow"]
    assert "method GET is not allowed on /scale" in answer.get_json()["error"]
    answer = client.get("/no-such-endpoint", headers=AUTH)
    assert answer.status_code == 404 and answer.get_json() == {"error": "no endpoint /no-such-endpoint"}


# -- the server as a process ---------------------------------------------------------------------------


def command_lines() -> list[str]:
    """What `ps` shows: every process's command line."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # exited meanwhile
            continue
    return lines


@pytest.mark.slow
def test_the_scaler_runs_as_a_module_and_gives_the_lease_up_on_sigterm(redis_server, tmp_path):
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    process = scaler_process(redis_server.url, port, tmp_path / "hosts")
    try:
        wait_healthy(process, base)
        # The secrets came from files: no command line on the machine shows them.
        assert not [line for line in command_lines() if redis_server.password in line or TOKEN in line]
        assert requests.get(f"{base}/status", timeout=5).status_code == 401

        def leading() -> bool:
            return requests.get(f"{base}/status", headers=AUTH, timeout=5).json()["is_leader"]

        wait_until(leading, timeout_s=10, what="the replica to take the lease")
        status = requests.get(f"{base}/status", headers=AUTH, timeout=5).json()
        assert status["leader"] == status["replica"] and status["controller"]["ticks"] >= 1
        assert redis_server.client().get(RedisKeys().leader).decode() == status["replica"]

        process.send_signal(signal.SIGTERM)
        returncode, err = finish(process)
        assert returncode == 0, err
        assert redis_server.client().get(RedisKeys().leader) is None  # released, not left to expire
    finally:
        stop(process)


@pytest.mark.slow
def test_the_scaler_exits_with_a_clear_message_when_redis_rejects_the_password(redis_server, tmp_path):
    url = redis_server.url.replace(redis_server.password, "not-the-password")
    returncode, message = finish(scaler_process(url, free_loopback_port(), tmp_path / "hosts"))
    assert returncode == 3
    assert "rejected the credentials" in message and "not-the-password" not in message
