"""Namespace credentials: one Redis ACL user per namespace, created and rotated by the scaler.

A namespace's hosts (through their secrets file) and routed containers (through the init parameter
`warmwhisk_protocol.credentials.CREDENTIAL_PARAMETER` of the namespace's ML actions) log in as the
namespace's user, whose rights are `NamespaceKeys.acl_rules`: that namespace's keys, the registry's
commands, nothing else. The scaler, as Redis's admin, keeps the password in its own key
(`RedisKeys.credential`) and applies the user again whenever Redis lost it (a restart without
persistence). Rotation issues a new password and keeps the previous one valid for a grace period,
so routed containers holding it keep working until OpenWhisk replaces them.

`python -m warmwhisk_scaler.credentials --namespace NS [--rotate]` prints a namespace's
credential (the admin Redis URL from `--redis-url-file` or `WARMWHISK_REDIS_URL_FILE`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence

import redis

from warmwhisk_protocol.credentials import NamespaceCredential
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import connect_redis


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class NamespaceCredentials:
    """The namespaces' ACL users, over the scaler's admin connection."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        grace_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._grace_s = grace_s
        self._clock = clock
        # What this scaler issued or read, to restore after Redis lost its state (a restart
        # without persistence loses the users and the stored passwords alike).
        self._known: dict[str, dict[str, str]] = {}

    def namespaces(self) -> list[str]:
        """Namespaces with a credential: the ones the scaler serves."""
        stored = {_text(m) or "" for m in self._redis.smembers(self._keys.namespaces)}
        return sorted(stored | set(self._known))

    def issue(self, namespace: str) -> NamespaceCredential:
        """The namespace's credential, created on first use."""
        stored = self._stored(namespace)
        if stored is not None:
            return stored
        known = self._known.get(namespace)  # Redis lost it: the same password, not a new one
        if known is not None:
            return self._set(namespace, known["password"], known["previous"] or None,
                             float(known["previous_until"] or 0))  # fmt: skip
        return self._set(namespace, secrets.token_urlsafe(24), previous=None, previous_until=0.0)

    def rotate(self, namespace: str) -> NamespaceCredential:
        """A new password; the current one stays valid for the grace period."""
        current = self._stored(namespace)
        previous = None if current is None else current.password
        return self._set(namespace, secrets.token_urlsafe(24), previous, self._clock() + self._grace_s)

    def revoke(self, namespace: str) -> None:
        """Remove the namespace's user and credential (its hosts and routers lose access)."""
        self._known.pop(namespace, None)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.credential(namespace))
        pipe.srem(self._keys.namespaces, namespace)
        pipe.execute()
        self._redis.acl_deluser(self._keys.namespace_user(namespace))

    def enforce(self) -> None:
        """Each tick: apply every namespace's user as stored (Redis may have lost it) and drop
        rotated passwords past their grace period."""
        for namespace in self.namespaces():
            stored = self._fields(namespace)
            fields = stored or self._known.get(namespace)
            if fields is None:
                continue
            previous, until = fields.get("previous") or None, float(fields.get("previous_until") or 0)
            expired = bool(previous) and until <= self._clock()
            user = self._redis.execute_command("ACL", "GETUSER", self._keys.namespace_user(namespace))
            if expired:
                previous, until = None, 0.0
            if stored is None or user is None or expired:
                self._set(namespace, fields["password"], previous, until)

    # -- internals ----------------------------------------------------------------------------
    def _fields(self, namespace: str) -> dict[str, str] | None:
        raw = self._redis.hgetall(self._keys.credential(namespace))
        if not raw:
            return None
        fields = {_text(k) or "": _text(v) or "" for k, v in raw.items()}
        self._known[namespace] = fields
        return fields

    def _stored(self, namespace: str) -> NamespaceCredential | None:
        fields = self._fields(namespace)
        if fields is None:
            return None
        return NamespaceCredential(self._keys.namespace_user(namespace), fields["password"])

    def _set(
        self, namespace: str, password: str, previous: str | None, previous_until: float
    ) -> NamespaceCredential:
        self._apply(namespace, [password, *([previous] if previous else [])])
        fields = {"user": self._keys.namespace_user(namespace), "password": password,
                  "previous": previous or "", "previous_until": repr(previous_until)}  # fmt: skip
        self._known[namespace] = fields
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.credential(namespace))
        pipe.hset(self._keys.credential(namespace), mapping=fields)
        pipe.sadd(self._keys.namespaces, namespace)
        pipe.execute()
        return NamespaceCredential(self._keys.namespace_user(namespace), password)

    def _apply(self, namespace: str, passwords: Sequence[str]) -> None:
        rules = ["reset", "on", *(f">{p}" for p in passwords), *self._keys.namespace(namespace).acl_rules()]
        self._redis.execute_command("ACL", "SETUSER", self._keys.namespace_user(namespace), *rules)


class InMemoryCredentials:
    """The namespaces a test's in-memory registries serve (no Redis users to create)."""

    def __init__(self, namespaces: Sequence[str] = ()) -> None:
        self._namespaces = set(namespaces)

    def namespaces(self) -> list[str]:
        return sorted(self._namespaces)

    def issue(self, namespace: str) -> NamespaceCredential:
        self._namespaces.add(namespace)
        return NamespaceCredential(RedisKeys().namespace_user(namespace), "in-memory")

    def enforce(self) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warmwhisk_scaler.credentials",
        description="Print a namespace's registry credential (created on first use), for the init "
        "parameter WARMWHISK_CREDENTIAL of its ML actions.",
    )
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rotate", action="store_true", help="a new password (the old one stays valid)")
    parser.add_argument("--grace", type=float, default=3600.0, help="seconds a rotated password stays valid")
    parser.add_argument(
        "--redis-url-file",
        default=os.environ.get("WARMWHISK_REDIS_URL_FILE"),
        help="file holding the admin redis:// URL (default $WARMWHISK_REDIS_URL_FILE)",
    )
    parser.add_argument("--prefix", default=os.environ.get("WARMWHISK_REDIS_PREFIX", "warmwhisk"))
    args = parser.parse_args(argv)
    if not args.redis_url_file:
        parser.error("--redis-url-file (or WARMWHISK_REDIS_URL_FILE) is required")
    with open(args.redis_url_file) as file:
        url = file.read().strip()
    credentials = NamespaceCredentials(connect_redis(url), RedisKeys(args.prefix), args.grace)
    credential = credentials.rotate(args.namespace) if args.rotate else credentials.issue(args.namespace)
    print(credential.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
