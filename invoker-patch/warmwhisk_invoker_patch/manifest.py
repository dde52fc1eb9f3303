"""The runtime kind ``python:3-ml`` in OpenWhisk's runtimes manifest: the entry, an idempotent
merge into OpenWhisk's own ``ansible/files/runtimes.json``, and a validator with the rules
OpenWhisk's ExecManifest enforces when the controller, scheduler and invoker start.

Why a manifest kind rather than a ``--docker`` action: only manifest kinds get stem cells
(prewarmed containers), are never pulled at container creation, and run on the managed invokers
(apache/openwhisk ExecManifest.scala, Exec.scala `BlackBoxExec`, DockerContainer.scala `create`).

Everything here is pure (dicts in, dicts or findings out); reading and writing files is the CLI's.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .grammar import (
    BYTE_SIZE_HELP,
    INT_MAX,
    duration_millis,
    image_field_error,
    is_content_type,
    parse_byte_size,
    parse_scala_duration,
)

ML_KIND = "python:3-ml"
# The kind joins the stock `python` family: users find it with the other Python kinds
# (`GET /` lists runtimes by family), and with `"default": false` `python:default` keeps meaning
# the stock default (ExecManifest allows exactly one default per family with several kinds).
ML_FAMILY = "python"
IMAGE_PREFIX = "warmwhisk"
IMAGE_NAME = "runtime"
DEFAULT_TAG = "dev"
# Code stored as a database attachment, as every stock Python kind does (runtimes.json).
CODE_ATTACHMENT = {"attachmentName": "codefile", "attachmentType": "text/plain"}

# `([a-z0-9]+):default` (ExecManifest.scala `defaultSplitter`), matched against the whole kind.
_DEFAULT_KIND = re.compile(r"([a-z0-9]+):default")
_FAMILY_NAME = re.compile(r"[a-z0-9]+")


class ManifestError(ValueError):
    """A manifest that cannot be read or merged at all (not JSON, not an object, ...)."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# Rule ids and what each checks (the README's table is this one).
RULES: dict[str, str] = {
    "json": "the file is JSON with no key repeated in an object (a JSON reader keeps one silently)",
    "manifest-shape": "an object; `runtimes` an object of arrays; `blackboxes` an array",
    "family-empty": "a family has at least one kind (an empty one fails `defaultRuntimes`)",
    "family-name": "a family name is [a-z0-9]+, or `family:default` cannot reach it (warning)",
    "entry-shape": "an entry is an object with a string `kind`; flags are booleans; `stemCells` an array",
    "kind-unique": "a kind appears once in the whole manifest (OpenWhisk would keep one silently)",
    "kind-case": "a kind is lower case without blanks, as users' kinds are normalised (warning)",
    "family-default": "a family with several kinds has exactly one `default: true`",
    "deprecated-present": "`deprecated` is set: the invoker's pre-pull skips entries without it "
    "(error for python:3-ml, warning for others)",
    "image-name": "`image` is an object with `name` (and optional prefix, tag, registry) forming a "
    "valid image reference",
    "attached": "`attached` has a string `attachmentName` and a parseable `attachmentType`",
    "stemcell-count": "a stem cell has an integer `initialCount` (alias `count`) > 0",
    "stemcell-memory": "a stem cell has `memory`, a size string OpenWhisk reads",
    "reactive-bounds": "`reactive` has integer minCount, maxCount, threshold, increment with "
    "0 <= minCount <= maxCount, maxCount > 0, threshold > 0, 0 < increment <= maxCount",
    "reactive-ttl": "`reactive.ttl` is a Scala Duration string of at least 1 ms",
}


@dataclass(frozen=True)
class Finding:
    """One broken rule, naming the entry (family, kind) where there is one."""

    severity: Severity
    rule: str
    message: str
    family: str | None = None
    kind: str | None = None

    def __str__(self) -> str:
        where = "/".join(part for part in (self.family, self.kind) if part)
        return f"{self.severity}: {where + ': ' if where else ''}[{self.rule}] {self.message}"


def errors_in(findings: Collection[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.ERROR]


# --- the entry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StemCellSpec:
    """Prewarmed containers of the kind (ExecManifest `StemCell` + `ReactivePrewarmingConfig`).

    A prewarm is used only by an action of the same kind *and the same memory limit*
    (ContainerPool.scala `takePrewarmContainer`), so create ML actions with `limits.memory` equal
    to `memory` (256 MB by default: a routed container holds no model). The reactive block keeps
    `minCount` prewarms always and adds up to `maxCount` after cold starts, as nodejs:20 does in
    OpenWhisk's own manifest.
    """

    initial_count: int = 2
    memory: str = "256 MB"
    min_count: int = 1
    max_count: int = 4
    ttl: str = "2 minutes"
    threshold: int = 1
    increment: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "initialCount": self.initial_count,
            "memory": self.memory,
            "reactive": {
                "minCount": self.min_count,
                "maxCount": self.max_count,
                "ttl": self.ttl,
                "threshold": self.threshold,
                "increment": self.increment,
            },
        }


def ml_runtime_entry(
    *, tag: str = DEFAULT_TAG, registry: str | None = None, stem_cell: StemCellSpec | None = None
) -> dict[str, Any]:
    """The manifest entry of ``python:3-ml``; ValueError if it would break a manifest rule.

    ``registry`` becomes `image.registry`, which the invoker puts in front of the image when it
    starts a container (`resolveImageName`). OpenWhisk's ansible pre-pull ignores that field and
    pulls ``{{ runtimes_registry }}prefix/name:tag`` (roles/invoker/tasks/deploy.yml, "pull runtime
    action images per manifest"): leave ``registry`` unset and set `runtimes_registry`, or pre-pull
    the image yourself.
    """
    image: dict[str, str] = {"prefix": IMAGE_PREFIX, "name": IMAGE_NAME, "tag": tag}
    if registry:
        image["registry"] = registry
    entry: dict[str, Any] = {
        "kind": ML_KIND,
        "default": False,
        # Explicit: the pre-pull selects `deprecated == false`, so an entry without it is never pulled.
        "deprecated": False,
        "image": image,
        "attached": dict(CODE_ATTACHMENT),
        "stemCells": [(stem_cell or StemCellSpec()).as_json()],
    }
    problems = errors_in(_validate_entry(entry, ML_FAMILY, f"runtimes.{ML_FAMILY}[-]", strict=True))
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    return entry


# --- reading, merging, writing -----------------------------------------------------------------


def load_manifest(text: str) -> tuple[dict[str, Any], list[Finding]]:
    """Parse a manifest file's text; a key repeated in one JSON object is a finding (OpenWhisk's
    JSON reader keeps one of them silently, so a family or field could vanish unnoticed)."""
    findings: list[Finding] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                findings.append(
                    Finding(
                        Severity.ERROR, "json", f"key {key!r} appears twice in one object; one would be lost"
                    )
                )
            obj[key] = value
        return obj

    try:
        manifest = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ManifestError("a runtimes manifest is a JSON object")
    return manifest, findings


def dump_manifest(manifest: Mapping[str, Any]) -> str:
    """The manifest as OpenWhisk's runtimes.json is written (4 spaces, keys in their order):
    OpenWhisk's own file round-trips byte for byte, so a merge's diff is the entry alone."""
    return json.dumps(manifest, indent=4, ensure_ascii=False) + "\n"


def merge_runtime(
    manifest: Mapping[str, Any], entry: Mapping[str, Any], family: str = ML_FAMILY
) -> dict[str, Any]:
    """A copy of `manifest` with `entry` in `family`: an entry of the same kind anywhere is
    replaced (in place when it is in `family`, so a second merge changes nothing), otherwise the
    entry is appended to the family. Everything else is kept as it was, in its order."""
    result = copy.deepcopy(dict(manifest))
    runtimes = result.setdefault("runtimes", {})
    if not isinstance(runtimes, dict):
        raise ManifestError("`runtimes` is not an object")
    if family in runtimes and not isinstance(runtimes[family], list):
        raise ManifestError(f"family {family!r} is not an array")
    kind = entry["kind"]
    placed = False
    for name, versions in runtimes.items():
        if not isinstance(versions, list):
            continue  # the validator reports it; nothing of ours can be in it
        kept: list[Any] = []
        for version in versions:
            if isinstance(version, Mapping) and version.get("kind") == kind:
                if name == family and not placed:
                    kept.append(copy.deepcopy(dict(entry)))
                    placed = True
                continue
            kept.append(version)
        runtimes[name] = kept
    if not placed:
        runtimes.setdefault(family, []).append(copy.deepcopy(dict(entry)))
    return result


def remove_runtime(manifest: Mapping[str, Any], kind: str = ML_KIND) -> dict[str, Any]:
    """A copy of `manifest` without `kind` (the rollback). A family left empty is dropped: an
    empty family stops OpenWhisk at start-up. Actions of the kind stay in the database and can
    no longer be read, updated or invoked: delete or migrate them first."""
    result = copy.deepcopy(dict(manifest))
    runtimes = result.get("runtimes")
    if not isinstance(runtimes, dict):
        return result
    for name in list(runtimes):
        versions = runtimes[name]
        if not isinstance(versions, list):
            continue
        kept = [v for v in versions if not (isinstance(v, Mapping) and v.get("kind") == kind)]
        if len(kept) != len(versions):
            if kept:
                runtimes[name] = kept
            else:
                del runtimes[name]
    return result


# --- kind:default ------------------------------------------------------------------------------


def family_defaults(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Each family's default kind, as ExecManifest's `defaultRuntimes` computes it: the one kind
    of a single-kind family (even with `"default": false`), else the one `default: true`.
    ManifestError where OpenWhisk throws (several kinds and no default, or two defaults)."""
    defaults: dict[str, str] = {}
    for family, versions in _families(manifest):
        entries = [v for v in versions if isinstance(v, Mapping) and isinstance(v.get("kind"), str)]
        marked = [v["kind"] for v in entries if v.get("default") is True]
        if len(marked) == 1:
            defaults[family] = marked[0]
        elif not marked and len(entries) == 1:
            defaults[family] = entries[0]["kind"]
        elif not marked:
            raise ManifestError(f"{family} has multiple versions, but no default.")
        else:
            raise ManifestError(f"Found more than one default for {family}: {', '.join(marked)}.")
    return defaults


def resolve_kind(manifest: Mapping[str, Any], kind: str) -> str | None:
    """The kind an action created with `kind` gets, or None if the controller would refuse it
    ("The specified runtime ... is not supported"). The controller trims and lower-cases the
    kind users send (Exec.scala), then maps `family:default` to the family's default
    (`resolveDefaultRuntime`), so `python:default` stays the stock default after the merge."""
    requested = kind.strip().lower()
    match = _DEFAULT_KIND.fullmatch(requested)
    if match:
        return family_defaults(manifest).get(match.group(1))
    known = {v.get("kind") for _, versions in _families(manifest) for v in versions if isinstance(v, Mapping)}
    return requested if requested in known else None


def _families(manifest: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    runtimes = manifest.get("runtimes")
    if isinstance(runtimes, Mapping):
        for family, versions in runtimes.items():
            if isinstance(versions, list):
                yield family, versions


# --- validation --------------------------------------------------------------------------------


@dataclass
class _Collector:
    findings: list[Finding] = field(default_factory=list)
    family: str | None = None
    kind: str | None = None

    def error(self, rule: str, message: str) -> None:
        self.findings.append(Finding(Severity.ERROR, rule, message, self.family, self.kind))

    def warning(self, rule: str, message: str) -> None:
        self.findings.append(Finding(Severity.WARNING, rule, message, self.family, self.kind))


def validate_manifest(manifest: object, *, strict_kinds: Collection[str] = (ML_KIND,)) -> list[Finding]:
    """Every rule OpenWhisk's ExecManifest enforces at start-up (a failure stops the controller,
    scheduler or invoker: "Invalid runtimes manifest"), plus two defects OpenWhisk lets through
    silently: a duplicate kind and a missing `deprecated`. Kinds in `strict_kinds` (ours) get
    errors where others get warnings. Findings are in manifest order; none means valid."""
    out = _Collector()
    if not isinstance(manifest, Mapping):
        out.error("manifest-shape", "a runtimes manifest is a JSON object")
        return out.findings
    runtimes = manifest.get("runtimes", {})
    if runtimes is not None and not isinstance(runtimes, Mapping):
        out.error("manifest-shape", "`runtimes` must be an object of families")
        runtimes = {}
    seen: dict[str, str] = {}
    for family, versions in (runtimes or {}).items():
        family_out = _Collector(out.findings, family=family)
        if not isinstance(versions, list):
            family_out.error("manifest-shape", f"family {family!r} must be an array of kinds")
            continue
        if not versions:
            family_out.error("family-empty", f"family {family!r} has no kinds (OpenWhisk fails: no default)")
            continue
        if not _FAMILY_NAME.fullmatch(family):
            family_out.warning(
                "family-name", f"family {family!r} is not [a-z0-9]+: `{family}:default` cannot resolve to it"
            )
        defaults: list[str] = []
        kinds = 0
        for index, entry in enumerate(versions):
            where = f"runtimes.{family}[{index}]"
            kind = entry.get("kind") if isinstance(entry, Mapping) else None
            kind = kind if isinstance(kind, str) else None
            out.findings.extend(_validate_entry(entry, family, where, strict=kind in strict_kinds))
            if kind is None:
                continue
            kinds += 1
            if kind in seen:
                _Collector(out.findings, family, kind).error(
                    "kind-unique",
                    f"{where}: kind {kind!r} is also defined at {seen[kind]}; OpenWhisk keeps one of "
                    "them silently (its kind map is built with toMap), so the other would be dropped",
                )
            else:
                seen[kind] = where
            if isinstance(entry, Mapping) and entry.get("default") is True:
                defaults.append(kind)
        if kinds > 1 and not defaults:
            family_out.error(
                "family-default",
                f'{family} has multiple versions, but no default (set `"default": true` on exactly one)',
            )
        elif len(defaults) > 1:
            family_out.error(
                "family-default",
                f"Found more than one default for {family}: {', '.join(defaults)} (exactly one may be)",
            )
    blackboxes = manifest.get("blackboxes", [])
    if blackboxes is not None and not isinstance(blackboxes, list):
        out.error("manifest-shape", "`blackboxes` must be an array of images")
    else:
        for index, image in enumerate(blackboxes or []):
            out.findings.extend(_validate_image(image, f"blackboxes[{index}]", _Collector()))
    return out.findings


_BOOLEAN_FIELDS = ("deprecated", "default", "requireMain", "sentinelledLogs")


def _validate_entry(entry: object, family: str, where: str, *, strict: bool) -> list[Finding]:
    if not isinstance(entry, Mapping):
        out = _Collector(family=family)
        out.error("entry-shape", f"{where} must be an object")
        return out.findings
    kind = entry.get("kind")
    out = _Collector(family=family, kind=kind if isinstance(kind, str) else None)
    if not isinstance(kind, str) or not kind:
        out.error("entry-shape", f"{where} needs a string `kind`")
    elif kind != kind.strip().lower():
        out.warning(
            "kind-case",
            f"{where}: kind {kind!r} can never be used: the controller trims and lower-cases the kind "
            "users send before looking it up",
        )
    elif _DEFAULT_KIND.fullmatch(kind):
        out.warning("kind-case", f"{where}: kind {kind!r} is shadowed by `family:default` resolution")
    for name in _BOOLEAN_FIELDS:
        value = entry.get(name)
        if value is not None and not isinstance(value, bool):
            out.error("entry-shape", f"{where}.{name} must be true or false, not {value!r}")
    if "deprecated" not in entry or entry.get("deprecated") is None:
        message = (
            f"{where} has no `deprecated`: the invoker's image pre-pull selects `deprecated == false` "
            "(ansible roles/invoker deploy.yml, Helm dockerPullRuntimes): older Ansible skips this image, "
            "ansible-core 2.19 fails the task; managed images are not pulled at container start either; "
            'set "deprecated": false'
        )
        if strict:
            out.error("deprecated-present", message)
        else:
            out.warning("deprecated-present", message)
    if "image" not in entry:
        out.error("image-name", f"{where} needs an `image` object")
    else:
        _validate_image(entry["image"], f"{where}.image", out)
    if entry.get("attached") is not None:
        _validate_attached(entry["attached"], f"{where}.attached", out)
    stem_cells = entry.get("stemCells")
    if stem_cells is not None:
        if not isinstance(stem_cells, list):
            out.error("entry-shape", f"{where}.stemCells must be an array")
        else:
            for index, cell in enumerate(stem_cells):
                _validate_stem_cell(cell, f"{where}.stemCells[{index}]", out)
    return out.findings


def _validate_image(image: object, where: str, out: _Collector) -> list[Finding]:
    if not isinstance(image, Mapping):
        out.error("image-name", f"{where} must be an object {{name, prefix?, tag?, registry?}}")
        return out.findings
    if not isinstance(image.get("name"), str) or not image.get("name"):
        out.error("image-name", f"{where} needs a string `name`")
    for name in ("name", "prefix", "tag", "registry"):
        value = image.get(name)
        if value is None or (name != "name" and value == ""):
            continue  # absent (an empty prefix, tag or registry is dropped by `resolveImageName`)
        if not isinstance(value, str):
            out.error("image-name", f"{where}.{name} must be a string, not {value!r}")
            continue
        if name == "name" and not value:
            continue
        problem = image_field_error(name, value)
        if problem:
            out.error("image-name", f"{where}: {problem}")
    return out.findings


def _validate_attached(attached: object, where: str, out: _Collector) -> None:
    if not isinstance(attached, Mapping):
        out.error("attached", f"{where} must be an object {{attachmentName, attachmentType}}")
        return
    if not isinstance(attached.get("attachmentName"), str):
        out.error("attached", f"{where}.attachmentName must be a string")
    content_type = attached.get("attachmentType")
    if not isinstance(content_type, str) or not is_content_type(content_type):
        out.error("attached", f"{where}.attachmentType {content_type!r}: Could not deserialize content-type")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -INT_MAX - 1 <= value <= INT_MAX


def _validate_stem_cell(cell: object, where: str, out: _Collector) -> None:
    if not isinstance(cell, Mapping):
        out.error("stemcell-count", f"{where} must be an object {{initialCount, memory, reactive?}}")
        return
    count_key = "initialCount" if "initialCount" in cell else "count"
    count = cell.get(count_key)
    if count is None:
        out.error("stemcell-count", f"{where}: initialCount (or its alias count) is required")
    elif not _is_int(count):
        # Stricter than spray-json, which would truncate 2.5 to 2 without a word.
        out.error("stemcell-count", f"{where}.{count_key} must be an integer, not {count!r}")
    elif count <= 0:
        out.error("stemcell-count", f"{where}.{count_key} is {count}: initialCount must be positive")
    memory = cell.get("memory")
    if memory is None:
        out.error("stemcell-memory", f'{where}: memory is required (a size such as "256 MB")')
    elif not isinstance(memory, str):
        out.error("stemcell-memory", f"{where}.memory must be a string: {BYTE_SIZE_HELP}")
    else:
        try:
            parse_byte_size(memory)
        except ValueError as exc:
            out.error("stemcell-memory", f"{where}.memory: {exc}")
    if cell.get("reactive") is not None:
        _validate_reactive(cell["reactive"], f"{where}.reactive", out)


def _validate_reactive(reactive: object, where: str, out: _Collector) -> None:
    if not isinstance(reactive, Mapping):
        out.error(
            "reactive-bounds", f"{where} must be an object {{minCount, maxCount, ttl, threshold, increment}}"
        )
        return
    numbers: dict[str, int] = {}
    for name in ("minCount", "maxCount", "threshold", "increment"):
        value = reactive.get(name)
        if value is None:
            out.error("reactive-bounds", f"{where}.{name} is required")
        elif not _is_int(value):
            out.error("reactive-bounds", f"{where}.{name} must be an integer, not {value!r}")
        else:
            numbers[name] = value
    low, high = numbers.get("minCount"), numbers.get("maxCount")
    if low is not None and (low < 0 or (high is not None and low > high)):
        out.error(
            "reactive-bounds",
            f"{where}: minCount {low} must be >= 0 and <= maxCount {high} "
            "(OpenWhisk: minCount must be be greater than 0 and less than or equal to maxCount)",
        )
    if high is not None and high <= 0:
        out.error("reactive-bounds", f"{where}: maxCount {high}: maxCount must be positive")
    threshold = numbers.get("threshold")
    if threshold is not None and threshold <= 0:
        out.error("reactive-bounds", f"{where}: threshold {threshold}: threshold must be positive")
    increment = numbers.get("increment")
    if increment is not None and (increment <= 0 or (high is not None and increment > high)):
        out.error(
            "reactive-bounds",
            f"{where}: increment {increment}: increment must be positive and less than or equal to maxCount",
        )
    ttl = reactive.get("ttl")
    if ttl is None:
        out.error("reactive-ttl", f"{where}.ttl is required")
    elif not isinstance(ttl, str):
        out.error(
            "reactive-ttl",
            f"{where}.ttl must be a string: time unit not supported. Only milliseconds, seconds, "
            "minutes, hours, days are supported",
        )
    else:
        try:
            nanos = parse_scala_duration(ttl)
        except ValueError as exc:
            out.error("reactive-ttl", f"{where}.ttl: {exc}")
        else:
            if duration_millis(nanos) <= 0:
                out.error("reactive-ttl", f"{where}.ttl {ttl!r}: ttl must be positive (at least 1 ms)")
