"""The stack's state in SQLite: namespace keys, actions, activations (nothing lost on a restart).

One connection, used from the event loop's thread only (each call is a few tens of
microseconds; WAL with synchronous=NORMAL keeps a commit off the disk's critical path). A
read-modify-write (PUT of an action) runs without an await in between, so it is atomic. Keys and
actions are read on every invocation, so they are also kept in memory (written through; an
action's code can be megabytes of JSON to parse). The number of activations kept per namespace is
bounded: beyond it, the oldest go (checked every `PRUNE_EVERY` records).
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import string
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    uuid TEXT PRIMARY KEY, secret TEXT NOT NULL, namespace TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS actions (
    namespace TEXT NOT NULL, name TEXT NOT NULL, updated INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS activations (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, start INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activations_by_start ON activations (namespace, start DESC);
CREATE INDEX IF NOT EXISTS activations_by_name ON activations (namespace, name, start DESC);
"""
# An OpenWhisk key's secret is exactly 64 characters (Secret.scala).
_SECRET_CHARS = string.ascii_letters + string.digits
SECRET_LENGTH = 64
PRUNE_EVERY = 256


def new_key() -> tuple[str, str]:
    return str(uuid.uuid4()), "".join(secrets.choice(_SECRET_CHARS) for _ in range(SECRET_LENGTH))


class Store:
    def __init__(self, path: Path, max_activations_per_namespace: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)  # it holds the namespaces' keys
        self._max_activations = max_activations_per_namespace
        self._keys: dict[str, tuple[str, str]] = {}  # uuid -> (secret, namespace)
        self._actions: dict[tuple[str, str], dict[str, Any]] = {}
        self._added: Counter[str] = Counter()  # records per namespace since the start

    def close(self) -> None:
        self._db.close()

    # -- namespaces and keys ---------------------------------------------------------------------
    def ensure_namespace(self, namespace: str) -> tuple[str, str]:
        """The namespace's key (`uuid`, `secret`), created on first use and kept afterwards."""
        row = self._db.execute("SELECT uuid, secret FROM keys WHERE namespace = ?", (namespace,)).fetchone()
        if row:
            return row[0], row[1]
        key = new_key()
        self._db.execute("INSERT INTO keys VALUES (?, ?, ?)", (*key, namespace))
        return key

    def namespace_of(self, key_uuid: str, secret: str) -> str | None:
        """The namespace a `uuid:secret` pair owns, None when unknown or wrong."""
        known = self._keys.get(key_uuid)
        if known is None:
            row = self._db.execute(
                "SELECT secret, namespace FROM keys WHERE uuid = ?", (key_uuid,)
            ).fetchone()
            if row is None:
                return None
            known = self._keys[key_uuid] = (row[0], row[1])
        if not hmac.compare_digest(known[0].encode(), secret.encode()):
            return None
        return known[1]

    # -- actions -----------------------------------------------------------------------------------
    def action(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored action (shared: callers build new documents, never change this one)."""
        cached = self._actions.get((namespace, name))
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT doc FROM actions WHERE namespace = ? AND name = ?", (namespace, name)
        ).fetchone()
        if row is None:
            return None
        doc = self._actions[(namespace, name)] = json.loads(row[0])
        return doc

    def put_action(self, doc: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?)",
            (doc["namespace"], doc["name"], doc["updated"], json.dumps(doc)),
        )
        self._actions[(doc["namespace"], doc["name"])] = doc

    def delete_action(self, namespace: str, name: str) -> None:
        self._db.execute("DELETE FROM actions WHERE namespace = ? AND name = ?", (namespace, name))
        self._actions.pop((namespace, name), None)

    def actions(self, namespace: str, skip: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT doc FROM actions WHERE namespace = ? ORDER BY updated DESC, name LIMIT ? OFFSET ?",
            (namespace, limit, skip),
        )
        return [json.loads(r[0]) for r in rows]

    def count_actions(self, namespace: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM actions WHERE namespace = ?", (namespace,)).fetchone()[
            0
        ]

    # -- activations -------------------------------------------------------------------------------
    def add_activation(self, doc: dict[str, Any]) -> None:
        namespace = doc["namespace"]
        self._db.execute(
            "INSERT OR REPLACE INTO activations VALUES (?, ?, ?, ?, ?)",
            (doc["activationId"], namespace, doc["name"], doc["start"], json.dumps(doc)),
        )
        self._added[namespace] += 1
        if self._added[namespace] % PRUNE_EVERY == 0:  # so the table holds at most the bound + PRUNE_EVERY
            self._db.execute(
                "DELETE FROM activations WHERE namespace = ? AND id IN (SELECT id FROM activations "
                "WHERE namespace = ? ORDER BY start DESC LIMIT -1 OFFSET ?)",
                (namespace, namespace, self._max_activations),
            )

    def activation(self, namespace: str, activation_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT doc FROM activations WHERE namespace = ? AND id = ?", (namespace, activation_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def activations(
        self,
        namespace: str,
        *,
        name: str | None = None,
        since: int | None = None,
        upto: int | None = None,
        skip: int = 0,
        limit: int = 30,
    ) -> list[dict[str, Any]]:
        where, args = self._filters(namespace, name, since, upto)
        rows = self._db.execute(
            f"SELECT doc FROM activations WHERE {where} ORDER BY start DESC LIMIT ? OFFSET ?",
            (*args, limit, skip),
        )
        return [json.loads(r[0]) for r in rows]

    def count_activations(
        self, namespace: str, *, name: str | None = None, since: int | None = None, upto: int | None = None
    ) -> int:
        where, args = self._filters(namespace, name, since, upto)
        return self._db.execute(f"SELECT COUNT(*) FROM activations WHERE {where}", args).fetchone()[0]

    @staticmethod
    def _filters(
        namespace: str, name: str | None, since: int | None, upto: int | None
    ) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause of fixed text (values go as parameters)."""
        clauses, args = ["namespace = ?"], [namespace]
        if name is not None:
            # OpenWhisk's filter view keys an activation by `ns/pkg/name` when its action is in a
            # package and `ns/name` otherwise (whisks_design_document_for_activations_db_filters
            # _v2.1.1.json): the stack has no packages, so `package/action` matches nothing.
            clauses.append("name = ?")
            args.append(name)
        if since is not None:
            clauses.append("start >= ?")
            args.append(since)
        if upto is not None:
            clauses.append("start <= ?")
            args.append(upto)
        return " AND ".join(clauses), tuple(args)
