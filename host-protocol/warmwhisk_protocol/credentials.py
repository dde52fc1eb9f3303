"""How a namespace's credential travels, and how it meets the registry's address.

Each namespace has its own Redis ACL user (``RedisKeys.namespace_user``), limited to that
namespace's keys (``NamespaceKeys.acl_rules``). The scaler creates and rotates it. Its credential,
``<user>:<password>``, reaches:

* model hosts in their secrets file (``host.HostSecrets``), read once at start and removed;
* routed containers as the init parameter ``CREDENTIAL_PARAMETER`` of the namespace's own ML
  actions (OpenWhisk passes init parameters to /init only, never to /run); the router takes it out
  of the action's parameters before anything else sees them.

The invoker's own settings (``extraEnvVars``, which reach every container of the invoker, a
tenant's ``--docker`` image included) carry only the registry's address, without any password:
Redis's default user is off, so the address alone grants nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# The init parameter of an ML action that carries its namespace's credential.
CREDENTIAL_PARAMETER = "WARMWHISK_CREDENTIAL"


@dataclass(frozen=True)
class NamespaceCredential:
    user: str
    password: str

    def __post_init__(self) -> None:
        if not self.user or not self.password or ":" in self.user:
            raise ValueError("a credential is <user>:<password>, both non-empty")

    def encode(self) -> str:
        return f"{self.user}:{self.password}"

    @classmethod
    def parse(cls, text: str) -> NamespaceCredential:
        user, sep, password = text.strip().partition(":")
        if not sep:
            raise ValueError("a credential is <user>:<password>")
        return cls(user, password)

    def __repr__(self) -> str:  # never print the password
        return f"NamespaceCredential(user={self.user!r}, password=<hidden>)"


def without_credential(url: str) -> str:
    """`url` without user and password (what may be shown or handed to every container)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_credential(url: str, credential: NamespaceCredential) -> str:
    """The registry address `url` with `credential` as its user and password."""
    parts = urlsplit(without_credential(url))
    netloc = f"{quote(credential.user, safe='')}:{quote(credential.password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def has_credential(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password or parts.username)


def user_of(url: str) -> str | None:
    """The ACL user a redis:// URL logs in as (None: the default user)."""
    user = urlsplit(url).username
    return unquote(user) if user else None
