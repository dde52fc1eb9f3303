"""Forwarding one activation from a routed container to a model host, and the action's identity.

A router sends ``POST /run`` to the host's action port with the original /run body and the header
``ACTION_HEADER: <action key>``. The host answers ``200`` with an ``Envelope``: the action's own
status and JSON body, whether the activation succeeded, and its log lines (the router writes them
with its own sentinels, so OpenWhisk's log collection works as for a direct container). Any other
status means the host did not run the activation (it refused it, or is shutting down: 503).

An action's key is ``<fully qualified name>@<digest of its spec>``: a new revision (other code,
entry point or init parameters) is a new key, and a host can check that a registration it loads
is the one the key names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ACTION_HEADER = "X-Warmwhisk-Action"
# The credential a host was started with; it answers 401 to a forwarded run without it.
TOKEN_HEADER = "X-Warmwhisk-Host-Token"


def _wsgi(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


@dataclass(frozen=True)
class Forwarding:
    """What a router adds to a forwarded run: which action it is for, and the host's token."""

    action_key: str | None
    token: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {ACTION_HEADER: self.action_key or ""}
        if self.token is not None:
            headers[TOKEN_HEADER] = self.token
        return headers

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> Forwarding | None:
        """From a request's WSGI environ; None when it carries neither header (not forwarded)."""
        key, token = environ.get(_wsgi(ACTION_HEADER)), environ.get(_wsgi(TOKEN_HEADER))
        return None if key is None and token is None else cls(key, token)


# Hex digits of the spec digest in an action key (128 bits).
DIGEST_CHARS = 32


class EnvelopeError(ValueError):
    """A host's answer that is not an envelope."""


@dataclass(frozen=True)
class Envelope:
    """A host's answer to a forwarded run."""

    status: int  # the status the action's own container would have answered
    body: bytes  # its JSON body
    ok: bool  # the activation succeeded (no error of the action, the runtime or a deadline)
    stdout: str = ""
    stderr: str = ""

    def encode(self) -> bytes:
        # The body is already JSON: spliced in, not parsed and serialised again.
        head = json.dumps(
            {"status": self.status, "ok": self.ok, "stdout": self.stdout, "stderr": self.stderr}
        )
        return head[:-1].encode() + b', "body": ' + self.body + b"}"

    @classmethod
    def decode(cls, payload: bytes) -> Envelope:
        try:
            value = json.loads(payload)
            status, ok, body = value["status"], value["ok"], value["body"]
            stdout, stderr = value.get("stdout", ""), value.get("stderr", "")
        except (ValueError, TypeError, KeyError) as exc:
            raise EnvelopeError(f"not a forwarding envelope: {exc!r}") from exc
        if not (isinstance(status, int) and isinstance(ok, bool) and isinstance(body, (dict, list))):
            raise EnvelopeError("not a forwarding envelope: status, ok or body has the wrong type")
        if not (isinstance(stdout, str) and isinstance(stderr, str)):
            raise EnvelopeError("not a forwarding envelope: stdout and stderr must be strings")
        return cls(status, json.dumps(body, ensure_ascii=False).encode(), ok, stdout, stderr)


@dataclass(frozen=True)
class ActionSpec:
    """What a host needs to load an action, as a router registers it."""

    namespace: str
    name: str
    main: str
    binary: bool
    code: str
    # Init parameters (never the triggering activation's context).
    env: Mapping[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        material = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()[:DIGEST_CHARS]

    def key(self, qualified_name: str) -> str:
        return f"{qualified_name}@{self.digest()}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "env": dict(self.env)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ActionSpec:
        """Raises ValueError when a field is missing or has the wrong type."""
        try:
            spec = cls(value["namespace"], value["name"], value["main"], value["binary"], value["code"],
                       dict(value["env"]))  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an action registration: {exc!r}") from exc
        text = (spec.namespace, spec.name, spec.main, spec.code)
        if not all(isinstance(v, str) for v in text) or not isinstance(spec.binary, bool):
            raise ValueError("not an action registration: a field has the wrong type")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.env.items()):
            raise ValueError("not an action registration: env must map strings to strings")
        return spec


def key_digest(key: str) -> str:
    """The digest part of an action key ("" when it has none)."""
    return key.rpartition("@")[2] if "@" in key else ""


def namespace_of(key: str) -> str:
    """The namespace an action key belongs to: the first segment of ``/namespace/...@digest``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] or not parts[1]:
        raise ValueError(f"not an action key: {key!r}")
    return parts[1]
