"""OpenWhisk's wire rules without I/O: names, query parameters, the error type.

Each rule follows the controller (apache/openwhisk 1fae641a2: RestAPIs.scala, Entities.scala,
EntityPath.scala, Activations.scala, ActivationId.scala) and pekko-http's parsing of query values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import messages

# EntityPath.scala: a name segment; Java's \w is ASCII.
_NAME = re.compile(r"\A(\w|\w[\w@ .&-]{0,254}[\w@.&-])\Z", re.ASCII)
_MAX_NAME = 256
# pekko-http's Boolean unmarshaller (PredefinedFromStringUnmarshallers.scala), any case.
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_ACTIVATION_ID = re.compile(r"[0-9a-f]{32}")
# Java's Integer.parseInt / Long.parseLong (Scala's `toInt` / `toLong`): an optional sign and
# digits, nothing else (Python's int() would also take spaces and underscores), within 32 / 64 bits.
_JAVA_INTEGER = re.compile(r"[+-]?\d+")
INT_BITS, LONG_BITS = 32, 64
# whisk.query-limit (application.conf): default and maximum of `limit`.
DEFAULT_LIST_LIMIT = 30
MAX_LIST_LIMIT = 200


@dataclass
class ApiError(Exception):
    """An answer other than success: HTTP status and OpenWhisk's text for it."""

    status: int
    message: str
    headers: dict[str, str] | None = None


def check_name(name: str) -> str:
    """An entity name as OpenWhisk accepts it, or 400 with its text."""
    if len(name) > _MAX_NAME:
        raise ApiError(400, messages.name_too_long(len(name)))
    if not _NAME.match(name):
        raise ApiError(400, messages.ILLEGAL_NAME)
    return name


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(400, messages.malformed_query(name, messages.not_boolean(value)))


def parse_limit(value: str | None, collection: str) -> int:
    """`limit`: default 30, 0 means the maximum (200), above or below is 400."""
    if value is None:
        return DEFAULT_LIST_LIMIT
    number = _integer("limit", value, collection)
    if not 0 <= number <= MAX_LIST_LIMIT:
        raise ApiError(
            400, messages.malformed_query("limit", messages.out_of_range(number, MAX_LIST_LIMIT, collection))
        )
    return number or MAX_LIST_LIMIT


def parse_skip(value: str | None, collection: str) -> int:
    if value is None:
        return 0
    number = _integer("skip", value, collection)
    if number < 0:
        raise ApiError(400, messages.malformed_query("skip", messages.below_zero(number, collection)))
    return number


def java_integer(value: str, bits: int = INT_BITS) -> int | None:
    """`value` as Scala's `toInt` (bits=32) or `toLong` (bits=64) reads it; None where it throws."""
    if not _JAVA_INTEGER.fullmatch(value):
        return None
    number = int(value)
    bound = 1 << (bits - 1)
    return number if -bound <= number < bound else None


def _integer(name: str, value: str, collection: str) -> int:
    """`limit` / `skip`: a 32-bit integer, else "not an integer" (RestAPIs.scala L115-140: a value
    beyond Int is "not an integer", not "out of range")."""
    number = java_integer(value)
    if number is None:
        raise ApiError(400, messages.malformed_query(name, messages.not_integer(value, collection)))
    return number


def parse_timeout(value: str | None, max_ms: int) -> int:
    """A blocking invoke's `timeout` (ms): 1..max, default max."""
    if value is None:
        return max_ms
    number = java_integer(value) or 0  # Actions.scala L768-779: `value.toInt`, any failure is 400
    if not 1 <= number <= max_ms:
        raise ApiError(
            400, messages.malformed_query("timeout", messages.TIMEOUT_MALFORMED.format(max_ms=max_ms))
        )
    return number


def parse_epoch_ms(name: str, value: str | None) -> int | None:
    """`since` / `upto`: epoch milliseconds, a Long (Activations.scala L56-62: `value.toLong`; the
    message says seconds, as OpenWhisk's does)."""
    if value is None:
        return None
    number = java_integer(value, LONG_BITS)
    if number is None:
        raise ApiError(400, messages.malformed_query(name, messages.bad_epoch(value)))
    return number


def parse_name_filter(value: str | None) -> str | None:
    """The `name` filter of an activation list: `action` or `package/action`, normalised; None
    (no filter) when absent or blank. As Activations.scala L45-53 reads it into an EntityPath
    (EntityPath.scala L141-160: empty segments dropped, each a valid name): at most two segments,
    and any invalid value is the filter's own text, not the entity-name one."""
    if value is None or not value.strip():
        return None
    segments = [s for s in value.split("/") if s]
    if not segments or len(segments) > 2 or not all(_NAME.match(s) for s in segments):
        raise ApiError(400, messages.malformed_query("name", messages.bad_name_filter(value)))
    return "/".join(segments)


def parse_activation_id(value: str) -> str:
    if len(value) != 32:
        raise ApiError(400, messages.activation_id_length(len(value)))
    if not _ACTIVATION_ID.fullmatch(value):
        raise ApiError(400, messages.ACTIVATION_ID_INVALID)
    return value
