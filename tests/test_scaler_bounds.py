"""Bounds the scaler keeps: the server-wide host cap (sized from memory, shown on /status, enforced
on /scale and on pool knobs), typed and ranged pool knobs, and no start against a Redis that
answers anyone. Against real redis-servers (one with a password, one without), through Flask's
test client and the real `warmwhisk-scaler` process."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests
from flask.testing import FlaskClient

from redis_harness import RedisProcess, free_loopback_port
from scaler_harness import (
    ACTION,
    AUTH,
    finish,
    scaler_process,
    scaler_settings,
    served_scaler,
    stop,
    wait_healthy,
)
from warmwhisk_scaler.api import create_app
from warmwhisk_scaler.backends import BackendError
from warmwhisk_scaler.service import InsecureRedisError, Service, build, host_cap
from warmwhisk_scaler.settings import MAX_HOSTS_CEILING

GIB = 1 << 30
CAP = 6


@pytest.fixture
def service(redis_server, tmp_path: Path) -> Iterator[Service]:
    yield from served_scaler(redis_server.url, tmp_path / "hosts", CAP)


@pytest.fixture
def client(service: Service) -> FlaskClient:
    return create_app(service).test_client()


@pytest.fixture
def open_redis() -> Iterator[RedisProcess]:
    """A redis-server without a password: anyone on loopback may send it commands."""
    with RedisProcess(auth=False) as server:
        yield server


# -- the host cap ----------------------------------------------------------------------------------


def test_the_host_cap_is_sized_from_memory_unless_given_and_the_controller_sees_it(redis_server, tmp_path):
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for changes, expected in (
        ({}, min(MAX_HOSTS_CEILING, max(1, machine // GIB))),
        ({"host_memory_bytes": 256 << 20}, min(MAX_HOSTS_CEILING, max(1, machine // (256 << 20)))),
        ({"host_memory_bytes": machine * 4}, 1),
        ({"max_hosts": 3}, 3),
    ):
        built = build(scaler_settings(redis_server.url, tmp_path, **changes))
        try:
            assert built.settings.max_hosts == expected, changes
            assert built.controller.settings.max_hosts == expected  # the loop enforces the same cap
            status = create_app(built).test_client().get("/status", headers=AUTH).get_json()
            assert status["max_hosts"] == expected
        finally:
            built.stop()


def test_the_docker_backend_sizes_the_cap_from_the_engines_memory(tmp_path):
    """`docker info`'s MemTotal over the memory of one host; engine errors are BackendErrors."""
    settings = scaler_settings("redis://unused", tmp_path, backend="docker")

    def engine(info: Any) -> Any:
        def answer() -> Any:
            if isinstance(info, Exception):
                raise info
            return info

        return SimpleNamespace(client=SimpleNamespace(info=answer))

    assert host_cap(settings, engine({"MemTotal": 16 * GIB + 5})) == 16
    assert (
        host_cap(dataclasses.replace(settings, host_memory_bytes=GIB // 2), engine({"MemTotal": 16 * GIB}))
        == 32
    )
    assert host_cap(settings, engine({"MemTotal": 10_000 * GIB})) == MAX_HOSTS_CEILING
    assert host_cap(settings, engine({"MemTotal": GIB // 4})) == 1
    assert host_cap(dataclasses.replace(settings, max_hosts=7), engine(RuntimeError("not asked"))) == 7
    with pytest.raises(BackendError, match="docker info"):
        host_cap(settings, engine(docker.errors.APIError("engine down")))
    with pytest.raises(BackendError, match="--max-hosts"):
        host_cap(settings, engine({}))


@pytest.mark.docker
def test_the_cap_of_a_docker_scaler_is_the_real_engines_memory(redis_server, tmp_path, docker_client):
    built = build(scaler_settings(redis_server.url, tmp_path, backend="docker"))
    try:
        expected = min(MAX_HOSTS_CEILING, max(1, docker_client.info()["MemTotal"] // GIB))
        assert built.settings.max_hosts == expected
    finally:
        built.stop()


def test_manual_scale_stays_within_the_host_cap(service, client):
    answer = client.post("/scale", headers=AUTH, json={"pool": ACTION, "hosts": CAP})
    assert answer.status_code == 200 and answer.get_json()["config"]["manual_hosts"] == CAP
    for hosts in (CAP + 1, 10**9, 10**400, 1e9, 2.5, True, -1, "3", [1]):
        answer = client.post("/scale", headers=AUTH, json={"pool": ACTION, "hosts": hosts})
        assert answer.status_code == 400, hosts
        assert (
            f"hosts must be a whole number from 0 to {CAP} (the scaler's max_hosts)"
            in answer.get_json()["error"]
        )
    assert service.pool_config(ACTION).manual_hosts == CAP  # unchanged by the refused ones


# -- pool knobs --------------------------------------------------------------------------------------

BAD_KNOBS = [
    # The cases: each used to be accepted.
    ({"knobs": {"max_hosts": 1e9}}, f"knobs.max_hosts must be a whole number from 0 to {CAP}"),
    ({"knobs": {"max_hosts": 10**400}}, "knobs.max_hosts must be a whole number"),
    ({"knobs": {"max_hosts": True}}, "knobs.max_hosts must be a whole number"),
    ({"knobs": {"max_hosts": 2.5}}, "knobs.max_hosts must be a whole number"),
    ({"knobs": {"tick_s": 1e-300}}, "knobs.tick_s must be a number from 0.05"),
    # Types: floats are not whole numbers, booleans are not numbers, strings and lists neither.
    ({"knobs": {"max_hosts": 3.0}}, "knobs.max_hosts must be a whole number"),
    ({"knobs": {"min_hosts": CAP + 1}}, "knobs.min_hosts must be a whole number from 0"),
    ({"knobs": {"initial_limit": 2.0}}, "knobs.initial_limit must be a whole number from 1 to 1024"),
    ({"knobs": {"keep_alive_s": False}}, "knobs.keep_alive_s must be a number"),
    ({"knobs": {"keep_alive_s": "60"}}, "knobs.keep_alive_s must be a number"),
    ({"knobs": {"keep_alive_s": [60]}}, "knobs.keep_alive_s must be a number"),
    ({"knobs": {"keep_alive_s": None}}, "knobs.keep_alive_s may not be null"),
    ({"knobs": {"keep_alive_s": 1e308}}, "knobs.keep_alive_s must be a number from 0 to 1e+09"),
    ({"knobs": {"keep_alive_s": 10**400}}, "knobs.keep_alive_s must be a number"),
    # Ranges: limits 1..1024, durations >= 0, the tick >= 0.05, divisors > 0.
    ({"knobs": {"max_limit": 0}}, "knobs.max_limit must be a whole number from 1 to 1024"),
    ({"knobs": {"max_limit": 1025}}, "knobs.max_limit must be a whole number from 1 to 1024"),
    ({"knobs": {"keep_alive_s": -1}}, "knobs.keep_alive_s must be a number from 0"),
    ({"knobs": {"tick_s": 0.01}}, "knobs.tick_s must be a number from 0.05"),
    ({"policy": "kpa", "knobs": {"container_concurrency": 5000}}, "knobs.container_concurrency"),
    (
        {"policy": "kpa", "knobs": {"max_scale_down_rate": 0}},
        "knobs.max_scale_down_rate must be a number from 1e-06",
    ),
    ({"policy": "rayserve", "knobs": {"target_ongoing_requests": 0}}, "knobs.target_ongoing_requests"),
    ({"policy": "rayserve", "knobs": {"downscale_to_zero_delay_s": -5}}, "knobs.downscale_to_zero_delay_s"),
    ({"policy": "openwhisk", "knobs": {"max_hosts": CAP + 1}}, "knobs.max_hosts"),
    # The policy's own rules still apply after the bounds.
    ({"knobs": {"min_hosts": 5, "max_hosts": 2}}, "need 0 <= min_hosts <= max_hosts"),
    # Fields besides the knobs.
    ({"manual_hosts": CAP + 1}, f"manual_hosts must be a whole number from 0 to {CAP}"),
    ({"policy": ["hybrid"]}, "unknown policy ['hybrid']"),
    ({"policy": 7}, "unknown policy 7"),
]


@pytest.mark.parametrize(("body", "message"), BAD_KNOBS, ids=[str(i) for i in range(len(BAD_KNOBS))])
def test_pool_knobs_are_type_checked_and_bounded(service, client, body, message):
    answer = client.put(f"/pools/{ACTION}/config", headers=AUTH, json=body)
    assert answer.status_code == 400 and answer.is_json
    error = answer.get_json()["error"]
    assert message in error, error
    assert len(error) < 400  # 10**400 is cut short
    assert service.pool_config(ACTION).knobs == {}  # nothing stored


def test_knobs_within_their_bounds_are_stored_as_given(service, client):
    url = f"/pools/{ACTION}/config"
    for body in (
        {"knobs": {"max_hosts": CAP, "min_hosts": 0, "tick_s": 0.05, "keep_alive_s": 0, "max_limit": 1024}},
        {"knobs": {"keep_alive_s": 60, "limit_step_factor": 3}},  # whole numbers where numbers are meant
        {
            "policy": "rayserve",
            "knobs": {"downscale_to_zero_delay_s": None, "max_hosts": 1},
            "manual_hosts": 0,
        },
        {"policy": "kpa", "knobs": {"container_concurrency": 1024, "max_scale_up_rate": 1e9}},
    ):
        answer = client.put(url, headers=AUTH, json=body)
        assert answer.status_code == 200, (body, answer.get_json())
        expected = {"policy": None, "manual_hosts": None, **body}
        assert client.get(url, headers=AUTH).get_json()["config"] == expected


# -- a Redis open to anyone --------------------------------------------------------------------------


def test_the_scaler_refuses_a_redis_without_a_password_and_says_how_to_fix_it(open_redis, tmp_path):
    with pytest.raises(InsecureRedisError) as refused:
        build(scaler_settings(open_redis.url, tmp_path))
    message = str(refused.value)
    assert f"Redis at 127.0.0.1:{open_redis.port} answers commands without a password" in message
    assert "requirepass" in message and "--redis-url-file" in message and "--insecure-no-auth" in message


def test_insecure_no_auth_starts_against_it_with_a_warning(open_redis, tmp_path, capsys):
    built = build(scaler_settings(open_redis.url, tmp_path, insecure_no_auth=True))
    try:
        assert built.redis_ok()
    finally:
        built.stop()
    warning = capsys.readouterr().err
    assert "WARNING" in warning and "without a password (--insecure-no-auth)" in warning


def test_a_redis_protected_by_acl_users_alone_is_accepted(open_redis, tmp_path, capsys):
    """No requirepass, but the default user off: anonymous clients are refused, so is not open."""
    admin = open_redis.client()
    admin.execute_command("ACL", "SETUSER", "scaler", "on", ">scaler-pass", "~*", "&*", "+@all")
    admin.execute_command("ACL", "SETUSER", "default", "off")
    url = f"redis://scaler:scaler-pass@127.0.0.1:{open_redis.port}/0"
    built = build(scaler_settings(url, tmp_path))
    built.stop()
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.slow
def test_the_scaler_process_refuses_an_open_redis_unless_told_and_then_warns(open_redis, tmp_path):
    returncode, message = finish(scaler_process(open_redis.url, free_loopback_port(), tmp_path / "a"))
    assert returncode == 3, message
    assert "answers commands without a password" in message and "--insecure-no-auth" in message

    port = free_loopback_port()
    process = scaler_process(open_redis.url, port, tmp_path / "b", "--insecure-no-auth", "--max-hosts", "5")
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}")
        status = requests.get(f"http://127.0.0.1:{port}/status", headers=AUTH, timeout=5).json()
        assert status["max_hosts"] == 5
        process.send_signal(signal.SIGTERM)
        returncode, err = finish(process)
    finally:
        stop(process)
    assert returncode == 0 and "WARNING: Redis at" in err, err
