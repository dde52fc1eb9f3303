"""`warmwhisk_devstack.store`: keys, actions and activations in SQLite, kept across restarts and
bounded per namespace."""

from __future__ import annotations

import stat
from pathlib import Path

from warmwhisk_devstack.store import PRUNE_EVERY, SECRET_LENGTH, Store


def activation(namespace: str, n: int) -> dict:
    return {"activationId": f"{n:032x}", "namespace": namespace, "name": "a", "start": n, "response": {}}


def test_keys_are_made_once_checked_exactly_and_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "stack.db")
    key_uuid, secret = store.ensure_namespace("guest")
    assert len(secret) == SECRET_LENGTH and store.ensure_namespace("guest") == (key_uuid, secret)
    assert store.namespace_of(key_uuid, secret) == "guest"
    assert store.namespace_of(key_uuid, secret[:-1] + "x") is None
    assert store.namespace_of("no-such-uuid", secret) is None
    assert stat.S_IMODE((tmp_path / "stack.db").stat().st_mode) == 0o600
    store.close()
    again = Store(tmp_path / "stack.db")
    assert again.ensure_namespace("guest") == (key_uuid, secret)
    assert again.namespace_of(key_uuid, secret) == "guest"


def test_actions_are_written_through_and_read_back_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "stack.db")
    doc = {"namespace": "guest", "name": "a", "updated": 1, "version": "0.0.1"}
    store.put_action(doc)
    assert store.action("guest", "a") == doc
    store.put_action({**doc, "version": "0.0.2", "updated": 2})
    assert store.action("guest", "a")["version"] == "0.0.2"
    assert store.action("other", "a") is None
    store.close()
    again = Store(tmp_path / "stack.db")
    assert again.action("guest", "a")["version"] == "0.0.2" and again.count_actions("guest") == 1
    again.delete_action("guest", "a")
    assert again.action("guest", "a") is None and again.actions("guest", 0, 30) == []


def test_activations_are_bounded_per_namespace_whatever_the_interleaving(tmp_path: Path) -> None:
    bound = 10
    store = Store(tmp_path / "stack.db", max_activations_per_namespace=bound)
    for n in range(PRUNE_EVERY * 3):
        store.add_activation(activation("guest" if n % 3 else "other", n))
    for namespace in ("guest", "other"):
        assert store.count_activations(namespace) <= bound + PRUNE_EVERY
    newest = store.activations("guest", limit=1)[0]
    assert newest["start"] == max(n for n in range(PRUNE_EVERY * 3) if n % 3)
    assert store.activation("other", newest["activationId"]) is None  # another namespace's
