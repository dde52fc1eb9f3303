"""Tenant isolation, tried as an attacker would: namespace A's action on a real model host (a
hardened container from the image, started as the scaler's Docker backend starts it) looks for
credentials everywhere it can read, tries everything it finds against the real password-protected
Redis, calls namespace B's host directly, and tries to overwrite B's registration. Every step must
fail, and B's next activation, on a new host, must return B's own result.

Also: a container started the way the patched invoker starts every action container (a tenant's
own `--docker` image included) is given nothing that opens Redis.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routed_harness import ROUTED_ENV
from runtime_harness import IMAGE, TEST_LABELS, wait_until
from warmwhisk_invoker_patch import ContainerConfig
from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, with_credential, without_credential
from warmwhisk_protocol.host import HostLaunch, HostSecrets
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import RedisRegistry, load_scripts
from warmwhisk_scaler.backends.base import HostSpec, RunningHost
from warmwhisk_scaler.backends.docker_backend import DockerBackend
from warmwhisk_scaler.credentials import NamespaceCredentials

pytestmark = [pytest.mark.docker, pytest.mark.slow]

VICTIM = """
import os

def main(args):
    return {"who": "tenant-b", "database_password": os.environ.get("DB_PASSWORD")}
"""

# Runs on namespace A's host. Everything it returns is what an attacker would learn.
ATTACK = r'''
import gc, http.client, json, os, re, sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

TOKENISH = re.compile(r"redis://[^\s\"'<>]+|[A-Za-z0-9_%.@-]+-ns-[A-Za-z0-9_%.@-]+:[A-Za-z0-9_-]{16,}|[A-Za-z0-9_-]{20,}")
SKIP_DIRS = ("/proc", "/sys", "/dev", "/usr", "/opt/warmwhisk/lib", "/var/lib/dpkg", "/var/cache")


def read(path, limit=65536):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def sources():
    yield "os.environ", json.dumps(dict(os.environ))
    yield "os.environb", repr(dict(os.environb))
    for pid in ("self", str(os.getppid()), "1"):
        for name in ("environ", "cmdline"):
            text = read(f"/proc/{pid}/{name}")
            if text:
                yield f"/proc/{pid}/{name}", text.replace("\0", "\n")
    for top in ("/run", "/tmp", "/etc", "/action", "/models", "/var", "/root", "/home", "/opt", "/srv"):
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not os.path.join(root, d).startswith(SKIP_DIRS)]
            for name in files:
                path = os.path.join(root, name)
                if os.path.isfile(path) and not os.path.islink(path):  # no FIFO or socket
                    text = read(path)
                    if text is not None:
                        yield path, text


def memory():
    """What this process holds: its own registry client's login (the namespace's credential)."""
    found = set()
    for obj in gc.get_objects():
        if isinstance(obj, redis.ConnectionPool):
            kw = obj.connection_kwargs
            found.add((kw.get("username"), kw.get("password")))
    return found


def logins(found_text, from_memory):
    for hit in found_text:
        if hit.startswith("redis://"):
            url = redis.connection.parse_url(hit)
            yield url.get("username"), url.get("password")
        elif "-ns-" in hit and ":" in hit:
            yield tuple(hit.split(":", 1))
        else:
            yield None, hit
    yield from from_memory
    yield None, None


def try_redis(host, port, user, password, victim_key, action_key_a):
    outcome = {}
    client = redis.Redis(host=host, port=port, username=user, password=password, socket_timeout=2,
                         retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.RedisError as exc:  # not even a login
        return {"login": type(exc).__name__}
    probes = {
        "read_victim": lambda: client.get(victim_key),
        "overwrite_victim": lambda: client.set(victim_key, client.get(action_key_a) or "x"),
        "keys": lambda: client.keys("*"),
        "scan": lambda: client.scan(0),
        "eval": lambda: client.eval("return redis.call('GET', KEYS[1])", 1, victim_key),
        "config": lambda: client.config_get("requirepass"),
        "acl_list": lambda: client.acl_list(),
        "flushall": lambda: client.flushall(),
    }
    for name, probe in probes.items():
        try:
            value = probe()
            outcome[name] = "ok" if value not in (None, [], {}) or name == "overwrite_victim" else "empty"
        except redis.RedisError as exc:
            outcome[name] = type(exc).__name__
    return outcome


def call_victim_host(address, victim, tokens):
    host, port = address.rsplit(":", 1)
    statuses = []
    for token in [None, *tokens]:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        headers = {"X-Warmwhisk-Action": victim, "Content-Type": "application/json"}
        if token:
            headers["X-Warmwhisk-Host-Token"] = token
        conn.request("POST", "/run", body=json.dumps({"value": {}}), headers=headers)
        statuses.append(conn.getresponse().status)
        conn.close()
    return statuses


def main(args):
    hits = {}
    for where, text in sources():
        for match in TOKENISH.findall(text):
            hits.setdefault(match, set()).add(where)
    own = memory()
    tries = {}
    # Likeliest first: what the process's environment and /proc hold, then files; at most 300.
    ranked = sorted(hits, key=lambda h: (not any(w.startswith(("os.", "/proc")) for w in hits[h]), h))
    for user, password in list(logins(ranked[:300], own)):
        outcome = try_redis(args["redis_host"], args["redis_port"], user, password,
                            args["victim_registration"], args["own_registration"])
        tries[f"{user}:{'*' * len(password or '')}"] = outcome
    tokens = [h for h in ranked[:300] if "://" not in h and ":" not in h]
    return {
        "hits": {k: sorted(v) for k, v in hits.items()},
        "memory_logins": sorted(str(u) for u, _ in own),
        "redis": tries,
        "victim_host": call_victim_host(args["victim_host"], args["victim_key"], tokens),
    }
'''


@pytest.fixture
def backend(docker_client, tmp_path: Path) -> Iterator[DockerBackend]:
    made = DockerBackend(docker_client, IMAGE, owner=f"warmwhisk-test-{secrets.token_hex(3)}",
                         extra_labels=TEST_LABELS, secrets_dir=tmp_path / "host-secrets")  # fmt: skip
    yield made
    made.reconcile(lambda host: False)


class Tenants:
    def __init__(self, start, redis_server, backend: DockerBackend, models: Path) -> None:  # type: ignore[no-untyped-def]
        self.start, self.redis_server, self.backend, self.models = start, redis_server, backend, models
        self.keys = RedisKeys()
        self.credentials = NamespaceCredentials(redis_server.client(), self.keys)
        self.tokens: list[str] = []  # every host's
        load_scripts(redis_server.client())

    def registry(self, namespace: str) -> RedisRegistry:
        return RedisRegistry(self.redis_server.client(), self.keys.namespace(namespace), heartbeat_ttl_s=3.0)

    def deploy(self, namespace: str, name: str, code: str, **params: str) -> tuple[Any, str]:
        """A routed container with the action, as OpenWhisk initialises it; its key."""
        address = without_credential(self.redis_server.url)
        router = self.start(env={**ROUTED_ENV, "WARMWHISK_ROUTER_URL": address})
        env = {"__OW_NAMESPACE": namespace, "__OW_ACTION_NAME": f"/{namespace}/{name}",
               CREDENTIAL_PARAMETER: self.credentials.issue(namespace).encode(), **params}  # fmt: skip
        status, body = router.init(code, env=env)
        assert status == 200, body
        (key,) = self.registry(namespace).registered_actions()
        return router, key

    def host(self, namespace: str, key: str) -> RunningHost:
        """A model host container, started exactly as the scaler's Docker backend starts one."""
        host_id = f"h-attack-{secrets.token_hex(3)}"
        launch = HostLaunch(host_id=host_id, namespace=namespace, actions=(key,), heartbeat_s=0.5)
        url = with_credential(self.redis_server.url, self.credentials.issue(namespace))
        self.tokens.append(secrets.token_urlsafe(32))
        spec = HostSpec(host_id, key, launch.environment(), 512 * 1024**2, str(self.models),
                        secrets=HostSecrets(url, self.tokens[-1]))  # fmt: skip
        host = self.backend.start(spec)
        registry = self.registry(namespace)
        wait_until(lambda: any(h.host_id == host_id and h.state == "warm" for h in registry.hosts()),
                   timeout_s=60, what=f"{host_id} to turn warm")  # fmt: skip
        return host


def test_namespace_a_cannot_read_call_or_take_over_namespace_b(
    start_process_runtime, redis_server, backend, tmp_path, docker_client
) -> None:
    models = tmp_path / "models"
    models.mkdir(mode=0o755)
    tenants = Tenants(start_process_runtime, redis_server, backend, models)
    router_b, key_b = tenants.deploy("tenant-b", "secret-keeper", VICTIM, DB_PASSWORD="b-database-secret")
    router_a, key_a = tenants.deploy("tenant-a", "curious", ATTACK)
    host_b = tenants.host("tenant-b", key_b)
    tenants.host("tenant-a", key_a)
    assert router_b.run({})[1] == {"who": "tenant-b", "database_password": "b-database-secret"}
    registration_b = redis_server.client().get(tenants.keys.namespace("tenant-b").action(key_b))

    args = {"redis_host": redis_server.host, "redis_port": redis_server.port, "victim_host": host_b.address,
            "victim_key": key_b, "victim_registration": tenants.keys.namespace("tenant-b").action(key_b),
            "own_registration": tenants.keys.namespace("tenant-a").action(key_a)}  # fmt: skip
    status, report = router_a.run(args, timeout=120)
    assert status == 200 and "error" not in report, report

    # Nothing credential-like anywhere A can read: environment, /proc, argv, files.
    known = {redis_server.password, "b-database-secret", *tenants.tokens,
             *(tenants.credentials.issue(ns).password for ns in ("tenant-a", "tenant-b"))}  # fmt: skip
    leaked = {hit: where for hit, where in report["hits"].items() if any(secret in hit for secret in known)}
    assert leaked == {}, leaked
    assert len(report["hits"]) > 100  # it did look: many credential-shaped strings, none a credential
    # What A holds in memory is its own namespace's login, and that grants nothing of B's.
    assert report["memory_logins"] == [tenants.keys.namespace_user("tenant-a")]
    for login, outcome in report["redis"].items():
        for probe, result in outcome.items():
            assert result != "ok", (login, probe, outcome)
    assert set(report["victim_host"]) == {401}, report["victim_host"]  # B's host wants B's token
    assert redis_server.client().get(tenants.keys.namespace("tenant-b").action(key_b)) == registration_b

    # B's next activation, on a new host, is B's own.
    backend.stop(host_b.host_id)
    tenants.host("tenant-b", key_b)
    assert router_b.run({})[1] == {"who": "tenant-b", "database_password": "b-database-secret"}

    # `docker inspect` of a host shows no secret: no password in its environment, a path for its secrets.
    for container in docker_client.containers.list(filters={"label": f"warmwhisk.owner={backend.owner}"}):
        text = json.dumps(container.attrs)
        assert redis_server.password not in text
        for namespace in ("tenant-a", "tenant-b"):
            assert tenants.credentials.issue(namespace).password not in text
        config = container.attrs["HostConfig"]
        assert config["ReadonlyRootfs"] and config["CapDrop"] == ["ALL"] and config["PidsLimit"] == 512
        assert "no-new-privileges" in config["SecurityOpt"]
        assert container.attrs["Config"]["User"] == "1000:1000"


DUMP = r"""
import json, os, redis, sys
url = os.environ.get("WARMWHISK_ROUTER_URL", "")
found = {"env": dict(os.environ), "argv": sys.argv}
try:
    redis.Redis.from_url(url, socket_timeout=2).get("anything")
    found["redis"] = "open"
except redis.RedisError as exc:
    found["redis"] = type(exc).__name__
print(json.dumps(found))
"""


def test_what_the_invoker_gives_every_container_opens_nothing(docker_client, redis_server) -> None:
    """A tenant's own image run by the patched invoker gets the registry's address, never a way in."""
    env = ContainerConfig(registry_address=without_credential(redis_server.url)).environment()
    assert env["WARMWHISK_MODE"] == "routed"
    output = docker_client.containers.run(
        IMAGE, ["python", "-c", DUMP], environment=env, network_mode="host", labels=TEST_LABELS, remove=True
    ).decode()
    found = json.loads(output)
    assert found["redis"] == "AuthenticationError" or found["redis"].endswith("Error"), found
    assert found["redis"] != "open"
    assert redis_server.password not in output
