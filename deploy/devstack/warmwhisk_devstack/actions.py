"""Action documents as OpenWhisk's controller makes them, without I/O: create, update, views.

`ActionRules` holds what a deployment configures (its runtimes manifest, limit ranges, size
limits); `put_action` turns a PUT body into the stored document or raises `ApiError` with
OpenWhisk's status and text (Actions.scala `create` / `updateWhiskAction`, Exec.scala,
Limits.scala, Parameter.scala, WhiskEntity.scala; `../shared/reference/ow-rest-api.md` §3, §7).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warmwhisk_invoker_patch.manifest import resolve_kind

from . import messages
from .wire import ApiError

BLACKBOX = "blackbox"
SEQUENCE = "sequence"
LIMIT_FIELDS = ("timeout", "memory", "logs", "concurrency")
# Exec.scala `isBinaryCode`: strict base64, a multiple of 4 long.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_PUT_FIELDS = frozenset(
    {"exec", "parameters", "limits", "version", "publish", "annotations", "delAnnotations"}
)


@dataclass(frozen=True)
class LimitRange:
    low: int
    high: int
    default: int


@dataclass(frozen=True)
class ActionRules:
    """What the deployment allows. `manifest`: OpenWhisk's runtimes manifest (the kinds);
    `limits`: each limit's range and default (timeout ms, memory MB, logs MB, concurrency)."""

    manifest: Mapping[str, Any]
    limits: Mapping[str, LimitRange]
    exec_size_limit: int = 48 * 1024 * 1024  # whisk.exec-size-limit
    parameter_size_limit: int = 1024 * 1024  # whisk.parameter-size-limit (parameters, annotations)
    kinds: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        listed = [
            entry["kind"] for entries in self.manifest.get("runtimes", {}).values() for entry in entries
        ]
        object.__setattr__(self, "kinds", (BLACKBOX, *listed))

    def entry(self, kind: str) -> Mapping[str, Any] | None:
        """The manifest entry of a resolved kind (None for blackbox)."""
        for entries in self.manifest.get("runtimes", {}).values():
            for entry in entries:
                if entry["kind"] == kind:
                    return entry
        return None

    def is_deprecated(self, kind: str) -> bool:
        entry = self.entry(kind)
        return bool(entry and entry.get("deprecated"))


def is_binary_code(code: str) -> bool:
    trimmed = code.strip()
    return bool(trimmed) and len(trimmed) % 4 == 0 and _BASE64.fullmatch(trimmed) is not None


def _malformed(detail: str) -> ApiError:
    return ApiError(400, messages.malformed_content(detail))


def parse_exec(raw: Any, rules: ActionRules) -> dict[str, Any]:
    """`exec` of a PUT as stored: `{kind, code, binary, main?}` or `{kind: blackbox, image, binary,
    code?, main?}`; the kind trimmed, lower-cased and `family:default` resolved."""
    if not isinstance(raw, dict):
        raise _malformed("exec malformed")
    kind_raw = raw.get("kind")
    if not isinstance(kind_raw, str):
        raise _malformed(messages.KIND_NOT_STRING)
    kind = kind_raw.strip().lower()
    resolved = BLACKBOX if kind == BLACKBOX else resolve_kind(rules.manifest, kind)
    if resolved is None:
        # The text names the kind trimmed and lower-cased (Exec.scala L287-289, L327).
        raise _malformed(messages.unsupported_kind(kind, list(rules.kinds)))
    main = raw.get("main")
    if main is not None and not isinstance(main, str):
        raise _malformed(messages.main_not_string(kind))
    code = raw.get("code")
    out: dict[str, Any] = {"kind": resolved}
    if resolved == BLACKBOX:
        image = raw.get("image")
        if not isinstance(image, str) or not image.strip():
            raise _malformed(messages.IMAGE_NOT_STRING)
        out["image"] = image.strip()
        if code is not None:
            if not isinstance(code, str):
                raise _malformed(messages.code_not_string(resolved))
            out["code"] = code
        out["binary"] = isinstance(code, str) and is_binary_code(code)
    else:
        if not isinstance(code, str):
            # A kind whose manifest entry has `attached` takes code as a string or an attachment
            # object and says so (Exec.scala L331-336); the others want a string (L346-351).
            entry = rules.entry(resolved)
            attached = bool(entry and entry.get("attached"))
            raise _malformed(messages.code_not_string(resolved, attached))
        out["code"] = code
        out["binary"] = is_binary_code(code)
    if main:
        out["main"] = main
    size = len(out.get("code", "").encode())
    if size > rules.exec_size_limit:
        raise ApiError(413, messages.field_too_large("exec", size, rules.exec_size_limit))
    return out


def parse_key_values(raw: Any, what: str, limit: int) -> list[dict[str, Any]]:
    """`parameters` or `annotations`: `[{key, value[, init][, encryption]}]` (Parameter.scala)."""
    if not isinstance(raw, list):
        raise _malformed(f"{what} malformed!")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise _malformed(f"{what} malformed!")
        extra = set(item) - {"key", "value", "init", "encryption"}
        init = item.get("init", False)
        encryption = item.get("encryption")
        if extra or not isinstance(init, bool) or not (encryption is None or isinstance(encryption, str)):
            raise _malformed(f"{what} malformed!")
        entry: dict[str, Any] = {"key": item["key"], "value": item["value"]}
        if init:
            entry["init"] = True
        if encryption is not None:
            entry["encryption"] = encryption
        out.append(entry)
    size = len(json.dumps(out, separators=(",", ":")).encode())
    if size > limit:
        raise ApiError(413, messages.field_too_large(what, size, limit))
    return out


def parse_limits(raw: Any, rules: ActionRules) -> dict[str, int]:
    """The limits present in a PUT, each a whole number within the deployment's range."""
    if not isinstance(raw, dict):
        raise _malformed("limits malformed")
    out: dict[str, int] = {}
    for name in LIMIT_FIELDS:
        if name not in raw or raw[name] is None:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _malformed(messages.LIMIT_MALFORMED[name])
        if value != int(value):
            raise _malformed(messages.LIMIT_WHOLE[name])
        number = int(value)
        bounds = rules.limits[name]
        if number > bounds.high:
            raise ApiError(400, messages.limit_out_of_range(name, number, bounds.high, above=True))
        if number < bounds.low:
            raise ApiError(400, messages.limit_out_of_range(name, number, bounds.low, above=False))
        out[name] = number
    return out


def _bump_patch(version: str) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def _set_annotation(annotations: list[dict[str, Any]], key: str, value: Any) -> list[dict[str, Any]]:
    return [*(a for a in annotations if a["key"] != key), {"key": key, "value": value}]


def put_action(
    existing: Mapping[str, Any] | None,
    body: Any,
    namespace: str,
    name: str,
    overwrite: bool,
    rules: ActionRules,
    now_ms: int,
) -> dict[str, Any]:
    """The stored action after a PUT: a create when `existing` is None, an update with
    `overwrite`, else 409. Fields other than the PUT's are ignored, as OpenWhisk does."""
    if not isinstance(body, dict):
        # spray-json reads the body's first field, `exec` (WhiskEntity.scala L192-198, ProductFormats).
        raise _malformed(messages.object_expected_in_field("exec"))
    content = {k: v for k, v in body.items() if k in _PUT_FIELDS}
    exec_ = parse_exec(content["exec"], rules) if content.get("exec") is not None else None
    limit_size = rules.parameter_size_limit
    parameters = (
        parse_key_values(content["parameters"], "parameters", limit_size)
        if content.get("parameters") is not None
        else None
    )
    annotations = (
        parse_key_values(content["annotations"], "annotations", limit_size)
        if content.get("annotations") is not None
        else []
    )
    limits = parse_limits(content["limits"], rules) if content.get("limits") is not None else {}
    version = content.get("version")
    if version is not None and (not isinstance(version, str) or not _SEMVER.fullmatch(version)):
        raise _malformed("version malformed")
    publish = content.get("publish")
    if publish is not None and not isinstance(publish, bool):
        raise _malformed("publish malformed")
    removed = content.get("delAnnotations") or []
    if not isinstance(removed, list) or not all(isinstance(k, str) for k in removed):
        raise _malformed("delAnnotations malformed")

    # The body is read and the limits checked before the store is asked whether the name exists
    # (Actions.scala `create` L211-231, then ApiUtils.putEntity L323-330): a bad body is 400, not 409.
    if existing is not None and not overwrite:
        raise ApiError(409, messages.EXISTS)
    if existing is None:
        if exec_ is None:
            raise ApiError(400, messages.EXEC_UNDEFINED)
        kind = exec_["kind"]
        if rules.is_deprecated(kind):
            raise ApiError(400, messages.deprecated_kind(kind))
        merged_annotations = annotations
        if not any(a["key"] == "provide-api-key" for a in merged_annotations):
            merged_annotations = [*merged_annotations, {"key": "provide-api-key", "value": False}]
        doc_limits = {n: limits.get(n, rules.limits[n].default) for n in LIMIT_FIELDS}
        doc = {
            "namespace": namespace, "name": name, "exec": exec_, "parameters": parameters or [],
            "limits": doc_limits, "version": version or "0.0.1", "publish": bool(publish),
            "annotations": merged_annotations,
        }  # fmt: skip
    else:
        new_exec = exec_ if exec_ is not None else dict(existing["exec"])
        if rules.is_deprecated(new_exec["kind"]):
            raise ApiError(400, messages.deprecated_kind(new_exec["kind"]))
        kept = [a for a in existing["annotations"] if a["key"] not in removed]
        for annotation in annotations:
            kept = _set_annotation(kept, annotation["key"], annotation["value"])
        doc = {
            "namespace": namespace,
            "name": name,
            "exec": new_exec,
            "parameters": parameters if parameters is not None else existing["parameters"],
            "limits": {**existing["limits"], **limits},
            "version": version or _bump_patch(existing["version"]),
            "publish": existing["publish"] if publish is None else publish,
            "annotations": kept,
        }
    doc["annotations"] = _set_annotation(doc["annotations"], "exec", doc["exec"]["kind"])
    doc["updated"] = now_ms
    return doc


def action_view(doc: Mapping[str, Any], code: bool = True) -> dict[str, Any]:
    """GET's answer: the document, or with `code=false` its exec without code."""
    view = dict(doc)
    if not code:
        view["exec"] = {k: v for k, v in doc["exec"].items() if k != "code"}
    return view


def action_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A list item (WhiskAction.summaryAsJson)."""
    return {
        "namespace": doc["namespace"], "name": doc["name"], "version": doc["version"],
        "publish": doc["publish"], "annotations": doc["annotations"], "limits": doc["limits"],
        "exec": {"binary": doc["exec"]["binary"]}, "updated": doc["updated"],
    }  # fmt: skip


def init_parameters(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The action's init parameters (`init: true`): they go to /init's env, never to /run."""
    return {p["key"]: p["value"] for p in doc["parameters"] if p.get("init")}


def run_arguments(doc: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """/run's value: the action's parameters merged with the payload (payload wins), minus the
    init parameters (ContainerProxy.partitionArguments)."""
    initial = init_parameters(doc)
    merged = {p["key"]: p["value"] for p in doc["parameters"]}
    merged.update(payload)
    return {k: v for k, v in merged.items() if k not in initial}


def is_final(doc: Mapping[str, Any]) -> bool:
    return any(a["key"] == "final" and a["value"] is True for a in doc["annotations"])


def overrides_final(doc: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """Whether an invoke payload overrides a parameter of a `final` action that has a value."""
    if not is_final(doc):
        return False
    bound = {p["key"] for p in doc["parameters"] if p["value"] is not None}
    return bool(bound & set(payload))
