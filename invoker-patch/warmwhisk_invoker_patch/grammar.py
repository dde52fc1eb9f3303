"""The value grammars OpenWhisk parses the runtimes manifest with, ported so a manifest can be
checked before a controller, scheduler or invoker refuses to start on it.

Each function names the Scala it mirrors (apache/openwhisk, common/scala/src/main/scala/org/apache/
openwhisk/core/entity/...). Where the port is stricter than OpenWhisk, its docstring says so: a
value OpenWhisk would read in a surprising way (a fractional count silently truncated) is reported
instead of being reproduced.
"""

from __future__ import annotations

import math
import re

# --- ByteSize (Size.scala, `ByteSize.fromString`) -------------------------------------------------

# `(?i)\s?(\d+)\s?(GB|MB|KB|B|G|M|K)\s?` matched against the whole string (Java `matches()`); Java's
# `\s` and `\d` are ASCII-only, so are these.
_BYTE_SIZE = re.compile(r"[ \t\n\x0b\f\r]?([0-9]+)[ \t\n\x0b\f\r]?(GB|MB|KB|B|G|M|K)[ \t\n\x0b\f\r]?", re.I)
_SIZE_UNITS = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

BYTE_SIZE_HELP = 'a number and one of B, K[B], M[B], G[B] (e.g. "256 MB"; "MiB" is not read)'


def parse_byte_size(text: str) -> int:
    """Bytes of an OpenWhisk size string such as ``"256 MB"``; ValueError for what OpenWhisk
    refuses with `Size Unit not supported`. OpenWhisk's units are binary (1 MB = 1024 KB)."""
    match = _BYTE_SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size OpenWhisk reads: {BYTE_SIZE_HELP}")
    number = int(match.group(1))
    if number > LONG_MAX:  # Scala's `toLong` would throw
        raise ValueError(f"{text!r} is too large")
    return number * _SIZE_UNITS[match.group(2)[0].upper()]


# --- scala.concurrent.duration.Duration(String) ----------------------------------------------------

# Scala 2.13 `Duration.timeUnitLabels`, expanded as `expandLabels` does (each name but the first
# also with an "s").
_UNIT_NANOS = {
    "d day": 86_400 * 10**9,
    "h hr hour": 3_600 * 10**9,
    "m min minute": 60 * 10**9,
    "s sec second": 10**9,
    "ms milli millisecond": 10**6,
    "µs micro microsecond": 10**3,
    "ns nano nanosecond": 1,
}
DURATION_UNITS: dict[str, int] = {}
for _labels, _nanos in _UNIT_NANOS.items():
    _first, *_rest = _labels.split()
    DURATION_UNITS[_first] = _nanos
    for _label in _rest:
        DURATION_UNITS[_label] = _nanos
        DURATION_UNITS[_label + "s"] = _nanos

# What `java.lang.Double.parseDouble` reads, less hex floats and type suffixes (both contain
# letters, which Scala would already have taken as part of the unit).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
DURATION_HELP = 'a Scala Duration such as "2 minutes", "30 seconds" or "100 ms"'


def parse_scala_duration(text: str) -> int:
    """Nanoseconds of a finite Scala ``Duration(text)``, as the manifest's ``ttl`` is read
    (ExecManifest.scala `ttlSerdes`: `Duration(s)` then `FiniteDuration(length, unit)`).

    Scala drops all whitespace, takes the trailing letters as the unit and parses the rest as a
    double; ``Inf`` parses but has no length, so OpenWhisk fails on it: so does this.
    """
    compact = "".join(ch for ch in text if not ch.isspace())
    if compact in ("Inf", "PlusInf", "+Inf", "MinusInf", "-Inf"):
        raise ValueError(f"{text!r} is infinite; OpenWhisk needs a finite duration ({DURATION_HELP})")
    split = len(compact)
    while split > 0 and compact[split - 1].isalpha():  # `s1.reverse.takeWhile(_.isLetter)`
        split -= 1
    number, unit = compact[:split], compact[split:]
    if unit not in DURATION_UNITS or not _DECIMAL.fullmatch(number):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    exact = float(number) * DURATION_UNITS[unit]
    if not math.isfinite(exact) or abs(exact) > LONG_MAX:
        raise ValueError(f"{text!r} is out of range of a Scala Duration")
    nanos = math.floor(exact + 0.5)  # Duration.fromNanos: Math.round
    if abs(nanos) > LONG_MAX:
        raise ValueError(f"{text!r} is out of range of a Scala Duration")
    return nanos


def duration_millis(nanos: int) -> int:
    """`FiniteDuration.toMillis`: truncates toward zero (so 100 ns is 0 ms, not positive)."""
    return -(-nanos // 10**6) if nanos < 0 else nanos // 10**6


# --- Docker image references (ExecManifest.scala `ImageName` grammar) ------------------------------

# OpenWhisk ports Docker's reference grammar with fastparse. Its `uppercaseLetters = CharIn("a-Z")`
# is an empty range, so upper-case letters are refused everywhere (its own tests refuse "ABC"); these
# patterns keep that. The domain needs a dot or a port, as OpenWhisk's `domain` rule does.
_ALNUM = "[a-z0-9]+"
PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = "[a-z0-9-]+"  # OpenWhisk's FIXME: it accepts "-" at either end
DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})+(?::[0-9]+)?|{_DOMAIN_COMPONENT}(?::[0-9]+))"
TAG = r"[a-z0-9_][a-z0-9_.-]{0,127}"
_DIGEST = r"[a-z][a-z0-9]*(?:[+._-][a-z][a-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{DOMAIN})/)?(?P<path>{PATH_COMPONENT}(?:/{PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_PATH = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*")
# A registry in a manifest image is prepended as is (`resolveImageName`), so a "host[:port]" and an
# optional path below it are what make a valid reference; a single label such as "localhost" is
# accepted here because Docker itself treats it as a registry.
_REGISTRY = re.compile(rf"(?:{DOMAIN}|{_DOMAIN_COMPONENT})(?:/{PATH_COMPONENT})*/?")


def parse_image_reference(text: str) -> dict[str, str | None]:
    """``ImageName.fromString``: {registry, prefix, name, tag} of a `docker` reference such as
    ``"registry.example.com:5000/warmwhisk/runtime:dev"``; ValueError if OpenWhisk would refuse
    it ("could not parse image name"). The digest is parsed and dropped, as OpenWhisk does."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Docker image reference OpenWhisk parses")
    *prefix, name = match.group("path").split("/")
    return {
        "registry": match.group("domain"),
        "prefix": "/".join(prefix) or None,
        "name": name,
        "tag": match.group("tag"),
    }


def image_field_error(field: str, value: str) -> str | None:
    """Why one field of a manifest ``image`` object would not form a valid image reference, or
    None. `name` is one path component, `prefix` one or more, `tag` a Docker tag, `registry` a
    host with an optional port and path."""
    if field == "name":
        ok = re.fullmatch(PATH_COMPONENT, value) is not None
        rule = "one lower-case path component ([a-z0-9] with . _ __ - between)"
    elif field == "prefix":
        ok = _PATH.fullmatch(value) is not None
        rule = "lower-case path components separated by /"
    elif field == "tag":
        ok = re.fullmatch(TAG, value) is not None
        rule = "a Docker tag: [a-z0-9_] then up to 127 of [a-z0-9_.-] (OpenWhisk refuses upper case)"
    elif field == "registry":
        ok = _REGISTRY.fullmatch(value) is not None
        rule = "a registry host with an optional :port and path, lower case, no credentials"
    else:
        raise ValueError(f"unknown image field {field!r}")
    return None if ok else f"image.{field} {value!r} is not {rule}"


# --- Content types (Attachments.scala, pekko/akka-http `ContentType.parse`) ------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"]*\"))*")


def is_content_type(text: str) -> bool:
    """Whether `attached.attachmentType` parses as a media type (OpenWhisk: "Could not deserialize
    content-type" otherwise)."""
    return _CONTENT_TYPE.fullmatch(text.strip()) is not None
