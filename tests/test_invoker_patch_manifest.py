"""warmwhisk_invoker_patch.manifest and .grammar: the python:3-ml entry, the merge into OpenWhisk's
own runtimes.json (master and 2.0.0, verbatim fixtures), the ExecManifest rules on broken
manifests, `kind:default` resolution, and the `manifest` CLI."""

from __future__ import annotations

import copy
import difflib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from warmwhisk_invoker_patch import (
    ML_KIND,
    RULES,
    ManifestError,
    Severity,
    StemCellSpec,
    dump_manifest,
    errors_in,
    family_defaults,
    load_manifest,
    merge_runtime,
    ml_runtime_entry,
    remove_runtime,
    resolve_kind,
    validate_manifest,
)
from warmwhisk_invoker_patch.cli import main
from warmwhisk_invoker_patch.grammar import (
    duration_millis,
    parse_byte_size,
    parse_image_reference,
    parse_scala_duration,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openwhisk"
VERSIONS = ("master", "2.0.0")


def stock(version: str) -> dict[str, Any]:
    manifest, findings = load_manifest((FIXTURES / f"runtimes.{version}.json").read_text())
    assert findings == []
    return manifest


def merged(version: str = "master", **entry: Any) -> dict[str, Any]:
    return merge_runtime(stock(version), ml_runtime_entry(**entry))


def ml_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in manifest["runtimes"]["python"] if e["kind"] == ML_KIND)


# --- OpenWhisk's own manifests, and the merge --------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_openwhisk_manifest_is_valid_as_shipped(version: str) -> None:
    assert validate_manifest(stock(version)) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_merged_manifest_is_valid_and_keeps_python_default(version: str) -> None:
    manifest = merged(version)
    assert validate_manifest(manifest) == []
    assert resolve_kind(manifest, "python:default") == "python:3.10"
    assert resolve_kind(manifest, ML_KIND) == ML_KIND
    assert family_defaults(manifest) == family_defaults(stock(version))
    assert [e["kind"] for e in manifest["runtimes"]["python"]] == ["python:3.10", "python:3.11", ML_KIND]


@pytest.mark.parametrize("version", VERSIONS)
def test_merge_only_adds_the_entry_to_openwhisk_text(version: str) -> None:
    original = (FIXTURES / f"runtimes.{version}.json").read_text()
    assert dump_manifest(stock(version)) == original  # OpenWhisk's file round-trips byte for byte
    after = dump_manifest(merged(version))
    diff = [line for line in difflib.ndiff(original.splitlines(), after.splitlines()) if line[:1] in "+-"]
    assert diff and all(line.startswith("+ ") for line in diff), diff
    assert '"kind": "python:3-ml"' in "\n".join(diff)


@pytest.mark.parametrize("version", VERSIONS)
def test_merge_is_idempotent(version: str) -> None:
    once = merged(version)
    twice = merge_runtime(once, ml_runtime_entry())
    assert twice == once
    assert dump_manifest(twice) == dump_manifest(once)


def test_merge_replaces_an_existing_entry_in_place() -> None:
    manifest = stock("master")
    old = ml_runtime_entry(tag="old")
    manifest["runtimes"]["python"].insert(0, old)
    result = merge_runtime(manifest, ml_runtime_entry(tag="new"))
    kinds = [e["kind"] for e in result["runtimes"]["python"]]
    assert kinds == [ML_KIND, "python:3.10", "python:3.11"]
    assert result["runtimes"]["python"][0]["image"]["tag"] == "new"
    assert manifest["runtimes"]["python"][0]["image"]["tag"] == "old"  # the input is not mutated


def test_merge_moves_an_entry_from_another_family_and_drops_duplicates() -> None:
    manifest = stock("master")
    manifest["runtimes"]["nodejs"].append(ml_runtime_entry(tag="stray"))
    manifest["runtimes"]["python"] += [ml_runtime_entry(tag="a"), ml_runtime_entry(tag="b")]
    result = merge_runtime(manifest, ml_runtime_entry())
    everywhere = [e for es in result["runtimes"].values() for e in es if e["kind"] == ML_KIND]
    assert len(everywhere) == 1 and everywhere[0]["image"]["tag"] == "dev"
    assert [e["kind"] for e in result["runtimes"]["nodejs"]] == ["nodejs:18", "nodejs:20"]
    assert validate_manifest(result) == []


def test_merge_into_a_manifest_without_python_creates_the_family() -> None:
    result = merge_runtime(
        {"runtimes": {"nodejs": [{"kind": "nodejs:20", "image": {"name": "n"}}]}}, ml_runtime_entry()
    )
    assert list(result["runtimes"]) == ["nodejs", "python"]
    # ExecManifest makes a single-kind family's only kind its default, "default": false or not.
    assert resolve_kind(result, "python:default") == ML_KIND


def test_merge_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ManifestError):
        merge_runtime({"runtimes": []}, ml_runtime_entry())
    with pytest.raises(ManifestError):
        merge_runtime({"runtimes": {"python": {}}}, ml_runtime_entry())


@pytest.mark.parametrize("version", VERSIONS)
def test_remove_is_the_rollback(version: str) -> None:
    original = (FIXTURES / f"runtimes.{version}.json").read_text()
    assert dump_manifest(remove_runtime(merged(version))) == original
    assert remove_runtime(stock(version)) == stock(version)
    assert remove_runtime({"runtimes": {"python": [ml_runtime_entry()]}}) == {"runtimes": {}}


# --- the entry ---------------------------------------------------------------------------------


def test_entry_has_what_openwhisk_and_its_pre_pull_need() -> None:
    entry = ml_runtime_entry(tag="1.2.0", registry="registry.example.com:5000")
    assert entry["kind"] == "python:3-ml"
    assert entry["default"] is False and entry["deprecated"] is False
    assert entry["image"] == {
        "prefix": "warmwhisk",
        "name": "runtime",
        "tag": "1.2.0",
        "registry": "registry.example.com:5000",
    }
    python_311 = next(e for e in stock("master")["runtimes"]["python"] if e["kind"] == "python:3.11")
    assert entry["attached"] == python_311["attached"]
    (cell,) = entry["stemCells"]
    assert cell["initialCount"] > 0 and parse_byte_size(cell["memory"]) == 256 * 1024**2
    assert set(cell["reactive"]) == {"minCount", "maxCount", "ttl", "threshold", "increment"}
    assert "registry" not in ml_runtime_entry()["image"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tag": "Latest"},
        {"tag": "a b"},
        {"registry": "user:secret@registry.example.com"},
        {"stem_cell": StemCellSpec(memory="256 MiB")},
        {"stem_cell": StemCellSpec(ttl="forever")},
        {"stem_cell": StemCellSpec(min_count=5, max_count=4)},
        {"stem_cell": StemCellSpec(initial_count=0)},
    ],
)
def test_entry_refuses_values_that_would_stop_openwhisk(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ml_runtime_entry(**kwargs)


# --- broken manifests: each rule ---------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _python(m: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in m["runtimes"]["python"] if e["kind"] == kind)


def _cell(m: dict[str, Any]) -> dict[str, Any]:
    cell: dict[str, Any] = ml_entry(m)["stemCells"][0]
    return cell


def _set_reactive(**fields: Any) -> Mutation:
    return lambda m: _cell(m)["reactive"].update(fields)


def _drop_reactive(name: str) -> Mutation:
    return lambda m: _cell(m)["reactive"].pop(name)


BROKEN: list[tuple[str, Mutation, str, str | None, str | None, str]] = [
    # (id, mutation, rule, family, kind, a fragment of the message)
    (
        "kind twice across families",
        lambda m: m["runtimes"]["nodejs"].append(copy.deepcopy(_python(m, "python:3.11"))),
        "kind-unique",
        "python",  # reported at the later occurrence, naming the first
        "python:3.11",
        "also defined at runtimes.nodejs[2]; OpenWhisk keeps one of them silently",
    ),
    (
        "kind twice in its family",
        lambda m: m["runtimes"]["python"].append(copy.deepcopy(ml_entry(m))),
        "kind-unique",
        "python",
        ML_KIND,
        "runtimes.python[2]",
    ),
    (
        "no default",
        lambda m: _python(m, "python:3.10").update(default=False),
        "family-default",
        "python",
        None,
        "multiple versions, but no default",
    ),
    (
        "two defaults",
        lambda m: ml_entry(m).update(default=True),
        "family-default",
        "python",
        None,
        "more than one default for python: python:3.10, python:3-ml",
    ),
    (
        "empty family",
        lambda m: m["runtimes"].update(lua=[]),
        "family-empty",
        "lua",
        None,
        "no kinds",
    ),
    (
        "initialCount 0",
        lambda m: _cell(m).update(initialCount=0),
        "stemcell-count",
        "python",
        ML_KIND,
        "positive",
    ),
    (
        "count alias -1",
        lambda m: _cell(m).update(count=-1) or _cell(m).pop("initialCount"),
        "stemcell-count",
        "python",
        ML_KIND,
        "count is -1",
    ),
    (
        "count missing",
        lambda m: _cell(m).pop("initialCount"),
        "stemcell-count",
        "python",
        ML_KIND,
        "initialCount (or its alias count) is required",
    ),
    (
        "count 2.5",
        lambda m: _cell(m).update(initialCount=2.5),
        "stemcell-count",
        "python",
        ML_KIND,
        "integer",
    ),
    (
        "count true",
        lambda m: _cell(m).update(initialCount=True),
        "stemcell-count",
        "python",
        ML_KIND,
        "integer",
    ),
    ("memory missing", lambda m: _cell(m).pop("memory"), "stemcell-memory", "python", ML_KIND, "required"),
    ("memory MiB", lambda m: _cell(m).update(memory="256 MiB"), "stemcell-memory", "python", ML_KIND, "MiB"),
    ("memory number", lambda m: _cell(m).update(memory=256), "stemcell-memory", "python", ML_KIND, "string"),
    ("minCount < 0", _set_reactive(minCount=-1), "reactive-bounds", "python", ML_KIND, "minCount -1"),
    ("minCount > max", _set_reactive(minCount=5), "reactive-bounds", "python", ML_KIND, "<= maxCount 4"),
    (
        "maxCount 0",
        _set_reactive(minCount=0, maxCount=0, increment=0),
        "reactive-bounds",
        "python",
        ML_KIND,
        "maxCount must be positive",
    ),
    (
        "threshold 0",
        _set_reactive(threshold=0),
        "reactive-bounds",
        "python",
        ML_KIND,
        "threshold must be positive",
    ),
    (
        "increment 0",
        _set_reactive(increment=0),
        "reactive-bounds",
        "python",
        ML_KIND,
        "increment must be positive",
    ),
    (
        "increment > max",
        _set_reactive(increment=5),
        "reactive-bounds",
        "python",
        ML_KIND,
        "less than or equal to maxCount",
    ),
    (
        "threshold missing",
        _drop_reactive("threshold"),
        "reactive-bounds",
        "python",
        ML_KIND,
        "threshold is required",
    ),
    ("minCount string", _set_reactive(minCount="1"), "reactive-bounds", "python", ML_KIND, "integer"),
    ("ttl unit", _set_reactive(ttl="2 fortnights"), "reactive-ttl", "python", ML_KIND, "Scala Duration"),
    ("ttl number", _set_reactive(ttl=120), "reactive-ttl", "python", ML_KIND, "time unit not supported"),
    (
        "ttl below 1 ms",
        _set_reactive(ttl="100 ns"),
        "reactive-ttl",
        "python",
        ML_KIND,
        "ttl must be positive",
    ),
    ("ttl zero", _set_reactive(ttl="0 s"), "reactive-ttl", "python", ML_KIND, "ttl must be positive"),
    (
        "ttl negative",
        _set_reactive(ttl="-1 minute"),
        "reactive-ttl",
        "python",
        ML_KIND,
        "ttl must be positive",
    ),
    ("ttl infinite", _set_reactive(ttl="Inf"), "reactive-ttl", "python", ML_KIND, "infinite"),
    ("ttl missing", _drop_reactive("ttl"), "reactive-ttl", "python", ML_KIND, "ttl is required"),
    (
        "reactive not object",
        lambda m: _cell(m).update(reactive=[]),
        "reactive-bounds",
        "python",
        ML_KIND,
        "object",
    ),
    (
        "image missing",
        lambda m: ml_entry(m).pop("image"),
        "image-name",
        "python",
        ML_KIND,
        "needs an `image`",
    ),
    (
        "image string",
        lambda m: ml_entry(m).update(image="warmwhisk/runtime:dev"),
        "image-name",
        "python",
        ML_KIND,
        "object",
    ),
    (
        "image no name",
        lambda m: ml_entry(m)["image"].pop("name"),
        "image-name",
        "python",
        ML_KIND,
        "needs a string `name`",
    ),
    (
        "image upper case",
        lambda m: ml_entry(m)["image"].update(name="Runtime"),
        "image-name",
        "python",
        ML_KIND,
        "image.name",
    ),
    (
        "image tag",
        lambda m: ml_entry(m)["image"].update(tag="dev build"),
        "image-name",
        "python",
        ML_KIND,
        "image.tag",
    ),
    (
        "image prefix",
        lambda m: ml_entry(m)["image"].update(prefix="warm//whisk"),
        "image-name",
        "python",
        ML_KIND,
        "image.prefix",
    ),
    (
        "image registry credentials",
        lambda m: ml_entry(m)["image"].update(registry="user:pw@registry.example.com"),
        "image-name",
        "python",
        ML_KIND,
        "no credentials",
    ),
    (
        "blackbox image",
        lambda m: m["blackboxes"].append({"prefix": "Openwhisk", "name": "x"}),
        "image-name",
        None,
        None,
        "blackboxes[1]",
    ),
    (
        "our deprecated missing",
        lambda m: ml_entry(m).pop("deprecated"),
        "deprecated-present",
        "python",
        ML_KIND,
        "older Ansible skips this image",
    ),
    (
        "attachment type",
        lambda m: ml_entry(m)["attached"].update(attachmentType="text"),
        "attached",
        "python",
        ML_KIND,
        "content-type",
    ),
    (
        "attachment name",
        lambda m: ml_entry(m)["attached"].pop("attachmentName"),
        "attached",
        "python",
        ML_KIND,
        "attachmentName",
    ),
    (
        "default string",
        lambda m: ml_entry(m).update(default="false"),
        "entry-shape",
        "python",
        ML_KIND,
        "true or false",
    ),
    ("kind missing", lambda m: ml_entry(m).pop("kind"), "entry-shape", "python", None, "string `kind`"),
    (
        "entry not object",
        lambda m: m["runtimes"]["php"].append("php:7"),
        "entry-shape",
        "php",
        None,
        "object",
    ),
    (
        "stemCells object",
        lambda m: ml_entry(m).update(stemCells={}),
        "entry-shape",
        "python",
        ML_KIND,
        "array",
    ),
    ("runtimes array", lambda m: m.update(runtimes=[]), "manifest-shape", None, None, "object"),
    ("family object", lambda m: m["runtimes"].update(lua={}), "manifest-shape", "lua", None, "array"),
    ("blackboxes object", lambda m: m.update(blackboxes={}), "manifest-shape", None, None, "array"),
]


@pytest.mark.parametrize(
    ("mutate", "rule", "family", "kind", "fragment"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_each_rule_is_an_error_naming_entry_and_rule(
    mutate: Mutation, rule: str, family: str | None, kind: str | None, fragment: str
) -> None:
    manifest = merged()
    mutate(manifest)
    problems = errors_in(validate_manifest(manifest))
    assert problems, "the broken manifest passed"
    hits = [p for p in problems if p.rule == rule and p.family == family and p.kind == kind]
    assert hits, [str(p) for p in problems]
    assert any(fragment in p.message for p in hits), [str(p) for p in hits]
    text = str(hits[0])
    assert text.startswith("error: ") and f"[{rule}]" in text
    if kind:
        assert f"{family}/{kind}" in text
    assert rule in RULES


def test_missing_deprecated_is_a_warning_for_openwhisk_kinds() -> None:
    manifest = merged()
    _python(manifest, "python:3.11").pop("deprecated")
    findings = validate_manifest(manifest)
    assert errors_in(findings) == []
    (warning,) = findings
    assert warning.severity is Severity.WARNING and warning.rule == "deprecated-present"
    assert (warning.family, warning.kind) == ("python", "python:3.11")
    assert validate_manifest(manifest, strict_kinds={"python:3.11", ML_KIND})[0].severity is Severity.ERROR


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (
            lambda m: m["runtimes"]["python"].append({**ml_runtime_entry(), "kind": "Python:3.12"}),
            "kind-case",
        ),
        (
            lambda m: m["runtimes"]["python"].append({**ml_runtime_entry(), "kind": "python:default"}),
            "kind-case",
        ),
        (
            lambda m: m["runtimes"].update(
                {"py-thon": [{"kind": "py-thon:1", "image": {"name": "x"}, "deprecated": False}]}
            ),
            "family-name",
        ),
    ],
)
def test_warnings_for_kinds_users_cannot_reach(mutate: Mutation, rule: str) -> None:
    manifest = merged()
    mutate(manifest)
    findings = validate_manifest(manifest)
    assert [f.rule for f in findings if f.severity is Severity.WARNING] == [rule]


def test_valid_variants_openwhisk_accepts() -> None:
    manifest = merged()
    cell = _cell(manifest)
    cell["count"] = cell.pop("initialCount")  # the alias
    cell["memory"] = "1g"
    cell["reactive"].update(ttl="1.5 minutes", minCount=0)
    _python(manifest, "python:3.11")["stemCells"] = [{"initialCount": 1, "memory": "256MB"}]  # no reactive
    manifest["runtimes"]["java"][0]["default"] = False  # a single kind is its family's default anyway
    ml_entry(manifest)["image"]["registry"] = "localhost:5000/"
    assert validate_manifest(manifest) == []
    assert resolve_kind(manifest, "java:default") == "java:8"


def test_json_level_duplicates_are_errors() -> None:
    text = (
        (FIXTURES / "runtimes.master.json")
        .read_text()
        .replace('"runtimes": {', '"runtimes": {"python": [],', 1)
    )
    manifest, findings = load_manifest(text)
    assert [f.rule for f in findings] == ["json"] and "'python'" in findings[0].message
    assert len(manifest["runtimes"]["python"]) == 2  # the JSON reader kept the later one, silently
    with pytest.raises(ManifestError):
        load_manifest("[]")
    with pytest.raises(ManifestError):
        load_manifest("{")


def test_not_an_object() -> None:
    assert [f.rule for f in validate_manifest([])] == ["manifest-shape"]
    assert validate_manifest({}) == []  # both keys optional (ExecManifest.runtimes)


# --- kind:default ------------------------------------------------------------------------------


def test_resolve_kind_like_the_controller() -> None:
    manifest = merged()
    assert resolve_kind(manifest, "  PYTHON:Default ") == "python:3.10"  # trimmed and lower-cased
    assert resolve_kind(manifest, "nodejs:default") == "nodejs:20"
    assert resolve_kind(manifest, "Python:3-ML") == ML_KIND
    assert resolve_kind(manifest, "python:2") is None
    assert resolve_kind(manifest, "lua:default") is None
    assert resolve_kind(manifest, "python-x:default") is None  # not [a-z0-9]+: no default lookup
    ml_entry(manifest)["default"] = True
    with pytest.raises(ManifestError, match="more than one default for python"):
        resolve_kind(manifest, "python:default")
    for entry in manifest["runtimes"]["python"]:
        entry["default"] = False
    with pytest.raises(ManifestError, match="no default"):
        family_defaults(manifest)


# --- grammars ----------------------------------------------------------------------------------

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "parts"),
    [  # OpenWhisk's ExecManifestTests "ImageName.fromString"
        ("i", (None, None, "i", None)),
        ("i:t", (None, None, "i", "t")),
        ("p/i", (None, "p", "i", None)),
        ("pre1/pre2/img:t", (None, "pre1/pre2", "img", "t")),
        ("hostname:1234/img", ("hostname:1234", None, "img", None)),
        (f"hostname.com:3121/pre1/pre2/img:t@{SHA}", ("hostname.com:3121", "pre1/pre2", "img", "t")),
        (
            "registry.example.com/warmwhisk/runtime:dev",
            ("registry.example.com", "warmwhisk", "runtime", "dev"),
        ),
    ],
)
def test_image_reference_grammar(reference: str, parts: tuple[str | None, ...]) -> None:
    got = parse_image_reference(reference)
    assert (got["registry"], got["prefix"], got["name"], got["tag"]) == parts


@pytest.mark.parametrize(
    "reference", ["ABC", "x:8080:10/abc", "p/a:x:y", "p/a:t@sha256:77af4d6b9", "", "a//b"]
)
def test_image_reference_grammar_refuses(reference: str) -> None:
    with pytest.raises(ValueError):
        parse_image_reference(reference)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256 MB", 256 * 2**20),
        ("256m", 256 * 2**20),
        ("256MB", 256 * 2**20),
        ("1 g", 2**30),
        ("12 B", 12),
        (" 2K ", 2048),
    ],
)
def test_byte_size(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["256 MiB", "256", "MB", "1.5 GB", "256  MB", "-1 MB", "256 TB"])
def test_byte_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_byte_size(text)


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2 minutes", 120_000),
        ("30 seconds", 30_000),
        ("100 ms", 100),
        ("100ms", 100),
        ("1 minute", 60_000),
        ("1.5 min", 90_000),
        ("2 hrs", 7_200_000),
        ("1 d", 86_400_000),
        ("3 days", 259_200_000),
        ("1e3 ms", 1000),
        ("1 0 s", 10_000),  # Scala drops every blank
        ("999 micros", 0),
        ("5 µs", 0),
    ],
)
def test_scala_duration(text: str, millis: int) -> None:
    assert duration_millis(parse_scala_duration(text)) == millis


@pytest.mark.parametrize(
    "text", ["2 fortnights", "minutes", "", "two minutes", "Inf", "-Inf", "1e400 days", "0x10 s"]
)
def test_scala_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_scala_duration(text)


# --- the CLI -----------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_merge_in_place_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.json"
    path.write_text((FIXTURES / "runtimes.master.json").read_text())
    assert run("manifest", "merge", "--into", str(path), "--tag", "1.0.0")[0] == 0
    first = path.read_text()
    stamp = path.stat().st_mtime_ns
    assert ml_entry(json.loads(first))["image"]["tag"] == "1.0.0"
    assert run("manifest", "merge", "--into", str(path), "--tag", "1.0.0")[0] == 0
    assert path.read_text() == first and path.stat().st_mtime_ns == stamp
    assert run("manifest", "validate", str(path))[0] == 0


def test_cli_merge_to_stdout_and_remove(tmp_path: Path) -> None:
    code, out, _ = run(
        "manifest",
        "merge",
        "--into",
        str(FIXTURES / "runtimes.2.0.0.json"),
        "--registry",
        "reg.example.com",
        "--out",
        "-",
    )
    assert code == 0 and ml_entry(json.loads(out))["image"]["registry"] == "reg.example.com"
    path = tmp_path / "merged.json"
    path.write_text(out)
    assert run("manifest", "remove", "--from", str(path))[0] == 0
    assert path.read_text() == (FIXTURES / "runtimes.2.0.0.json").read_text()


def test_cli_merge_refuses_to_write_a_manifest_openwhisk_would_reject(tmp_path: Path) -> None:
    manifest = stock("master")
    _python(manifest, "python:3.11")["default"] = True  # already broken: two python defaults
    path = tmp_path / "runtimes.json"
    path.write_text(dump_manifest(manifest))
    code, _, err = run("manifest", "merge", "--into", str(path))
    assert code == 1 and "family-default" in err and "not written" in err
    assert path.read_text() == dump_manifest(manifest)
    code, _, err = run("manifest", "merge", "--into", str(path), "--stemcell-memory", "1 GiB")
    assert code == 1 and "GiB" in err


def test_cli_validate_reports_each_finding_and_exits_1(tmp_path: Path) -> None:
    manifest = merged()
    _cell(manifest)["initialCount"] = 0
    _python(manifest, "python:3.11").pop("deprecated")
    path = tmp_path / "broken.json"
    path.write_text(dump_manifest(manifest))
    code, out, _ = run("manifest", "validate", str(path))
    assert code == 1
    assert "error: python/python:3-ml: [stemcell-count]" in out
    assert "warning: python/python:3.11: [deprecated-present]" in out
    assert "1 error(s), 1 warning(s)" in out


def test_cli_resolve(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(dump_manifest(merged()))
    assert run("manifest", "resolve", str(path), "python:default")[1] == "python:3.10\n"
    assert run("manifest", "resolve", str(path), "python:3-ml")[1] == "python:3-ml\n"
    assert run("manifest", "resolve", str(path), "cobol:1")[0] == 1
