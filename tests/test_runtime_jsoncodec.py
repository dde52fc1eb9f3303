"""`warmwhisk_runtime.jsoncodec`: orjson's speed, the standard library's answers. Every body
parses to what `json.loads` gives (or fails where it fails, with its message), and every result
is written as JSON that reads back as the standard library's, refused where it refuses."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmwhisk_runtime import jsoncodec


def _stdlib_loads(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=refuse)


def _same_outcome(raw: bytes) -> None:
    try:
        expected: Any = ("value", _stdlib_loads(raw))
    except (ValueError, RecursionError) as exc:
        expected = ("error", type(exc), str(exc))
    try:
        got: Any = ("value", jsoncodec.loads(raw))
    except (ValueError, RecursionError) as exc:
        got = ("error", type(exc), str(exc))
    assert repr(got) == repr(expected)  # repr: 1 and 1.0, and NaN-free floats, compared exactly


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5)
)


@settings(max_examples=400)
@given(value=values)
def test_any_json_parses_as_the_standard_library_parses_it(value):
    _same_outcome(json.dumps(value).encode())


@settings(max_examples=400)
@given(raw=st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_any_bytes_parse_or_fail_as_with_the_standard_library(raw):
    _same_outcome(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"123456789012345678901234567890",  # beyond 64 bits: exact, never a float
        b"-9999999999999999999",
        b"18446744073709551615",
        b"[1e400, -1e400]",  # infinities, as the standard library reads them
        b'"\\ud800"',  # a lone surrogate
        b"[NaN]",
        b'{"a": Infinity}',
        '{"value": "ü"}'.encode("utf-16"),  # the standard library reads UTF-16 and UTF-32
        b"[" * 2000 + b"]" * 2000,  # past orjson's depth
        b"",
        b"\xef\xbb\xbf{}",
    ],
)
def test_the_cases_where_orjson_and_the_standard_library_differ(raw):
    _same_outcome(raw)


@settings(max_examples=400)
@given(value=values)
def test_any_result_reads_back_as_the_standard_librarys_json_or_is_refused_as_by_it(value):
    try:
        expected = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:  # an infinity
        with pytest.raises(ValueError):
            jsoncodec.dumps(value)
        return
    assert json.loads(jsoncodec.dumps(value)) == json.loads(expected)


@dataclasses.dataclass
class _Point:
    x: int


class _Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1: "a", 2.5: "b", False: "c", None: "d"},  # keys the standard library turns into strings
        {"big": 2**80},
        [_Text("sub"), {"nested": (1, 2)}],
    ],
)
def test_what_only_the_standard_library_writes_is_written_by_it(value):
    assert jsoncodec.dumps(value) == json.dumps(value, ensure_ascii=False, allow_nan=False).encode()


@pytest.mark.parametrize("value", [{"x": math.nan}, [math.inf], {"p": _Point(1)}, {1, 2}, "\ud800"])
def test_what_the_standard_library_refuses_is_refused(value):
    with pytest.raises((TypeError, ValueError)):
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    with pytest.raises((TypeError, ValueError)):
        jsoncodec.dumps(value)


def test_a_result_nested_too_deeply_raises_recursion_error_as_before():
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(RecursionError):
        jsoncodec.dumps({"r": nested})
