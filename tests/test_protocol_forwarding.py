"""The forwarding envelope and an action's identity (its key and digest)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmwhisk_protocol.forwarding import ActionSpec, Envelope, EnvelopeError, key_digest

SPEC = ActionSpec("guest", "echo", "main", False, "def main(a):\n    return a\n", {"GREETING": "hi"})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    status=st.integers(100, 599),
    ok=st.booleans(),
    body=st.dictionaries(st.text(), json_values, max_size=4) | st.lists(json_values, max_size=4),
    stdout=st.text(),
    stderr=st.text(),
)
def test_an_envelope_round_trips(status: int, ok: bool, body: object, stdout: str, stderr: str) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    decoded = Envelope.decode(Envelope(status, raw, ok, stdout, stderr).encode())
    assert (decoded.status, decoded.ok, decoded.stdout, decoded.stderr) == (status, ok, stdout, stderr)
    assert json.loads(decoded.body) == body


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[]", b'{"status": 200}', b'{"status": "200", "ok": true, "body": {}}',
     b'{"status": 200, "ok": 1, "body": {}}', b'{"status": 200, "ok": true, "body": "text"}',
     b'{"status": 200, "ok": true, "body": {}, "stdout": 5}'],
)  # fmt: skip
def test_anything_else_is_not_an_envelope(payload: bytes) -> None:
    with pytest.raises(EnvelopeError, match="not a forwarding envelope"):
        Envelope.decode(payload)


def test_the_key_names_the_action_and_a_digest_of_everything_it_loads() -> None:
    key = SPEC.key("/guest/echo")
    assert key.startswith("/guest/echo@") and key_digest(key) == SPEC.digest() and len(SPEC.digest()) == 32
    for change in ({"code": "x"}, {"main": "other"}, {"binary": True}, {"env": {"GREETING": "ho"}},
                   {"namespace": "other"}, {"name": "renamed"}):  # fmt: skip
        assert dataclasses.replace(SPEC, **change).digest() != SPEC.digest(), change
    assert ActionSpec.from_json(json.loads(json.dumps(SPEC.to_json()))).digest() == SPEC.digest()
    assert key_digest("/guest/no-digest") == ""


@pytest.mark.parametrize(
    "raw",
    [{}, {**SPEC.to_json(), "binary": "yes"}, {**SPEC.to_json(), "env": {"A": 1}},
     {**SPEC.to_json(), "code": None}],
)  # fmt: skip
def test_a_registration_with_a_missing_or_mistyped_field_is_refused(raw: dict) -> None:
    with pytest.raises(ValueError, match="not an action registration"):
        ActionSpec.from_json(raw)
