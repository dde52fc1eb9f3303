"""Routed containers and model hosts as the scaler and the invoker patch start them, for tests:
namespace credentials as real Redis ACL users, a routed container whose registry address carries no
password (its credential arrives as the action's init parameter), hosts with a secrets file."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime_harness import RuntimeHandle
from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, with_credential, without_credential
from warmwhisk_protocol.host import Env, HostLaunch, HostSecrets
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import RedisRegistry, load_scripts
from warmwhisk_scaler.credentials import NamespaceCredentials

ROUTED_ENV = {"WARMWHISK_MODE": "routed"}


class RoutedStack:
    """One Redis (the fixture's, whose default user is the admin), its namespace users, and
    runtimes started through `start` (a `start_process_runtime`-like factory)."""

    def __init__(self, start: Callable[..., RuntimeHandle], redis_server: Any, tmp_path: Path) -> None:
        self.start = start
        self.redis_server = redis_server
        self.tmp_path = tmp_path
        self.keys = RedisKeys()
        self.credentials = NamespaceCredentials(redis_server.client(), self.keys)
        self.tokens: dict[str, str] = {}  # host id -> the token it was started with
        load_scripts(redis_server.client())

    @property
    def address(self) -> str:
        """The registry address every container may be given: no password."""
        return without_credential(self.redis_server.url)

    def registry(self, namespace: str = "guest", heartbeat_ttl_s: float = 0.6) -> RedisRegistry:
        """The namespace's registry as the scaler sees it (admin user)."""
        return RedisRegistry(self.redis_server.client(), self.keys.namespace(namespace), heartbeat_ttl_s)

    def maintain(self) -> None:
        """What the scaler does each tick: scripts loaded, namespace users in place."""
        load_scripts(self.redis_server.client())
        self.credentials.enforce()

    def init_env(self, namespace: str = "guest", name: str = "echo", **env: str) -> dict[str, str]:
        """An /init env as OpenWhisk sends it for an ML action carrying its namespace's credential."""
        credential = self.credentials.issue(namespace).encode()
        return {"__OW_NAMESPACE": namespace, "__OW_ACTION_NAME": f"/{namespace}/{name}",
                "__OW_ACTIVATION_ID": "init-1", CREDENTIAL_PARAMETER: credential, **env}  # fmt: skip

    def router(self, **env: str) -> RuntimeHandle:
        return self.start(env={**ROUTED_ENV, Env.REGISTRY_URL: self.address, **env})

    def host(
        self, key: str, host_id: str, namespace: str = "guest", heartbeat_s: float = 0.2, **env: str
    ) -> RuntimeHandle:
        """A model host of `namespace` loading `key`, started as the process backend starts one."""
        launch = HostLaunch(host_id=host_id, namespace=namespace, actions=(key,), heartbeat_s=heartbeat_s)
        credential = self.credentials.issue(namespace)
        path = self.tmp_path / f"{host_id}-{secrets.token_hex(4)}.secrets"
        self.tokens[host_id] = secrets.token_urlsafe(16)
        HostSecrets(with_credential(self.redis_server.url, credential), self.tokens[host_id]).write(path)
        return self.start(env={**launch.environment(), Env.SECRETS_FILE: str(path), **env})
