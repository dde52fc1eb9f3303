"""The generated configuration as OpenWhisk itself reads it, from OpenWhisk's own files (verbatim
fixtures in tests/fixtures/openwhisk, SOURCES.md there), for master and 2.0.0:

- common/scala/transformEnvironment.sh (bash) turns our ``CONFIG_*`` variables into ``-D`` system
  properties, which are keys of OpenWhisk's application.conf / reference.conf;
- the ``set_fact: env`` blocks of ansible/roles/{invoker,controller,schedulers}/tasks/deploy.yml,
  rendered with Ansible's own templating over ansible/group_vars/all and our variables, carry our
  settings and overwrite nothing of OpenWhisk's own (index 0 of extraEnvVars above all);
- the invoker role's image pre-pull selects our image;
- openwhisk-deploy-kube: our values fit the chart's values.schema.json and reach the env the
  chart's templates build.

No network, no cluster: bash, Ansible's Python API and the fixtures.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleUndefinedVariable
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from warmwhisk_invoker_patch import (
    LOG_DRIVER_LOG_STORE,
    ML_KIND,
    TARGETS,
    ContainerConfig,
    Limits,
    component_environment,
    config_property,
    helm_values,
    load_manifest,
    merge_runtime,
    ml_runtime_entry,
)
from warmwhisk_invoker_patch.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "openwhisk"
VERSIONS = ("master", "2.0.0")
ADDRESS = "redis://10.0.0.5:6379/0"
CONTAINER = ContainerConfig(registry_address=ADDRESS, models_dir="/srv/models")
EV = "CONFIG_whisk_containerFactory_containerArgs_extraEnvVars_"
EV_PROP = "whisk.container-factory.container-args.extra-env-vars"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def openwhisk_manifest(version: str) -> dict[str, Any]:
    return load_manifest(fixture(f"runtimes.{version}.json"))[0]


# --- transformEnvironment.sh and HOCON --------------------------------------------------------


def transform(version: str, env: Mapping[str, str], home: Path) -> dict[str, str]:
    """Run OpenWhisk's transformEnvironment.sh with `env` as the whole environment; its output is
    the `-Dkey='value'` words the invoker's init.sh appends to INVOKER_OPTS."""
    result = subprocess.run(
        ["bash", str(FIXTURES / f"transformEnvironment.{version}.sh")],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    props: dict[str, str] = {}
    for word in shlex.split(result.stdout):
        assert word.startswith("-D"), word
        key, _, value = word[2:].partition("=")
        assert key not in props, f"{key} twice"
        props[key] = value
    return props


def _strip_comment(line: str) -> str:
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif not quoted and (char == "#" or line.startswith("//", index)):
            return line[:index].strip()
    return line.strip()


_KEY = r'[A-Za-z0-9_"\-.]+'


def hocon_paths(*names: str) -> dict[str, str]:
    """Declared keys of HOCON files and what each holds ("block", "list", "map" for an empty
    inline object such as `extra-args: {}`, "value"): just enough HOCON for OpenWhisk's confs."""
    paths: dict[str, str] = {}
    for name in names:
        stack: list[str] = []
        list_depth = 0
        for raw in fixture(name).splitlines():
            line = _strip_comment(raw)
            if list_depth:
                list_depth += line.count("[") - line.count("]")
                continue
            while line.startswith("}"):
                stack.pop()
                line = line[1:].strip()
            if not line or line.startswith("include "):
                continue
            block = re.fullmatch(rf"({_KEY})\s*[:=]?\s*\{{", line)
            if block:
                stack.append(block.group(1).replace('"', ""))
                paths[".".join(stack)] = "block"
                continue
            pair = re.fullmatch(rf"({_KEY})\s*[:=]\s*(.*)", line)
            if pair:
                path = ".".join([*stack, pair.group(1).replace('"', "")])
                value = pair.group(2)
                if value.startswith("["):
                    paths[path] = "list"
                    list_depth = max(0, value.count("[") - value.count("]"))
                elif value.startswith("{"):
                    paths[path] = "map"
                else:
                    paths[path] = "value"
        assert not stack, f"{name}: unbalanced braces {stack}"
    return paths


def hocon_confs(version: str) -> dict[str, str]:
    return hocon_paths(
        f"common-reference.{version}.conf",
        f"common-application.{version}.conf",
        f"invoker-application.{version}.conf",
    )


def declared(paths: Mapping[str, str], prop: str) -> bool:
    """Whether OpenWhisk reads `prop`: a declared key, an index of a declared list, or a key under
    a declared map (extra-args is Map[String, Set[String]])."""
    if paths.get(prop) in ("value", "list", "map"):
        return True
    parts = prop.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        kind = paths.get(".".join(parts[:cut]))
        if kind is None:
            continue
        rest = parts[cut:]
        if kind == "list":
            return len(rest) == 1 and rest[0].isdigit()
        return kind == "map"
    return False


def extra_env_var_map(props: Mapping[str, str]) -> dict[str, str]:
    """ContainerArgsConfig.extraEnvVarMap (ContainerFactory.scala): the numbered system properties
    become a list in index order (HOCON), split at the first '=', then `.toMap` (the last wins)."""
    indexed = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in props.items() if k.startswith(EV_PROP + "."))
    pairs = (v.partition("=") for _, v in indexed)
    return {name: value for name, _, value in pairs}


def test_hocon_reader_reads_the_keys_it_must() -> None:
    paths = hocon_confs("master")
    assert paths["whisk.container-pool.pekko-client"] == "value"
    assert paths[EV_PROP] == "list"
    assert paths["whisk.container-factory.container-args.extra-args"] == "map"
    assert paths["whisk.spi.LogStoreProvider"] == "value"
    assert not declared(paths, "whisk.container-pool.no-such-key")
    assert not declared(paths, f"{EV_PROP}.x")


@pytest.mark.parametrize("version", VERSIONS)
def test_transform_environment_turns_our_keys_into_openwhisk_hocon(version: str, tmp_path: Path) -> None:
    env = component_environment("invoker", CONTAINER, version)
    props = transform(version, env, tmp_path)
    # The Python port (used for Helm's -D flags) and OpenWhisk's script agree on every key.
    assert props == {config_property(k): v for k, v in env.items()}
    client = TARGETS[version].client_property
    assert props == {
        f"{EV_PROP}.1": "__OW_ALLOW_CONCURRENT=true",
        f"{EV_PROP}.2": "WARMWHISK_MODE=routed",
        f"{EV_PROP}.3": f"WARMWHISK_ROUTER_URL={ADDRESS}",
        f"{EV_PROP}.4": "WARMWHISK_REDIS_PREFIX=warmwhisk",
        "whisk.container-factory.container-args.extra-args.volume.0": "/srv/models:/models:ro",
        client: "true",
        "whisk.memory.max": "4096 m",
        "whisk.time-limit.max": "600 s",
        "whisk.concurrency-limit.max": "64",
        "whisk.spi.LogStoreProvider": LOG_DRIVER_LOG_STORE,
    }
    paths = hocon_confs(version)
    undeclared = [p for p in props if not declared(paths, p)]
    assert undeclared == []
    other = TARGETS["2.0.0" if version == "master" else "master"].client_property
    assert not declared(paths, other), f"{other} exists in {version}: the target would not matter"


def test_config_property_port_matches_the_script_on_tricky_names(tmp_path: Path) -> None:
    names = [
        "CONFIG_a__bC",
        "CONFIG_aBCd_e",
        "CONFIG_x_Yz_w",
        "CONFIG_a1B_c2",
        "CONFIG_whisk_spi_LogStoreProvider",
    ]
    env = {name: f"v{index}" for index, name in enumerate(names)}
    assert transform("master", env, tmp_path) == {config_property(k): v for k, v in env.items()}


# --- Ansible: OpenWhisk's roles rendered with Ansible's own templating -------------------------

# What OpenWhisk's group_vars/all and the env blocks need beyond group_vars/all itself: facts and
# inventory (hostvars, groups), values earlier tasks of the role compute (invoker_index,
# openwhisk_config), and the `db` dict, which group_vars/all reads from db_local.ini by lookups.
INVENTORY: dict[str, Any] = {
    "playbook_dir": "/openwhisk/ansible",
    "inventory_hostname": "host0",
    "ansible_host": "10.0.0.1",
    "ansible_date_time": {"iso8601": "2026-01-01T00:00:00Z"},
    "groups": {
        g: ["host0"]
        for g in (
            "invokers",
            "controllers",
            "schedulers",
            "kafkas",
            "zookeepers",
            "edge",
            "etcd",
            "db",
            "redis",
        )
    },
    "hostvars": {"host0": {"ansible_host": "10.0.0.1"}},
    "invoker_index": 0,
    "invoker_name": "invoker0",
    "controller_name": "controller0",
    "scheduler_index": 0,
    "whisk_logs_dir": "/tmp/wsklogs",
    "config_root_dir": "/tmp/wskconf",
    "openwhisk_config": "Y29uZmln",
    "db": {
        "protocol": "http",
        "host": "10.0.0.2",
        "port": 5984,
        "provider": "CouchDB",
        "credentials": {
            r: {"user": f"{r}-user", "pass": f"{r}-pass"} for r in ("invoker", "controller", "scheduler")
        },
        "whisk": {
            "auth": "whisk_local_subjects",
            "actions": "whisk_local_whisks",
            "activations": "whisk_local_activations",
        },
        "activation_store": {"backend": "CouchDB"},
        "artifact_store": {"backend": "CouchDB"},
    },
}

LOADER = DataLoader()


def trusted(value: Any) -> Any:
    """Ansible templates only trusted strings; every string of a vars or tasks file is."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, Mapping):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def our_ansible_vars(version: str) -> dict[str, Any]:
    """What an operator puts in group_vars: the CLI's output, read as YAML."""
    out, err = __import__("io").StringIO(), __import__("io").StringIO()
    argv = ["config", "--target", version, "--format", "ansible", "--registry-address", ADDRESS]
    argv += ["--models-dir", "/srv/models", "--runtimes", str(FIXTURES / f"runtimes.{version}.json")]
    assert main(argv, out, err) == 0, err.getvalue()
    variables: dict[str, Any] = yaml.safe_load(out.getvalue())
    return variables


def variables_for(version: str, ours: Mapping[str, Any]) -> dict[str, Any]:
    group_vars = trusted(LOADER.load(fixture(f"group_vars-all.{version}.yml")))
    variables = {**group_vars, **INVENTORY, **trusted(dict(ours))}
    variables.setdefault("runtimes_manifest", openwhisk_manifest(version))  # else: a lookup of the real file
    return variables


def role_env(role: str, version: str, variables: Mapping[str, Any]) -> dict[str, str]:
    """The `env` fact of a role's deploy.yml: its `set_fact` tasks from "populate environment
    variables" on that build `env` or an `*_env` dict, in order, with their `when` and
    `with_indexed_items`, as Ansible runs them."""
    tasks = LOADER.load(fixture(f"{role}-deploy.{version}.yml"))
    start = next(
        i for i, t in enumerate(tasks) if str(t.get("name", "")).startswith("populate environment variables")
    )
    facts: dict[str, Any] = {}
    for task in tasks[start:]:
        fact = task.get("set_fact")
        if not isinstance(fact, Mapping) or not all(k == "env" or k.endswith("_env") for k in fact):
            continue
        templar = Templar(loader=LOADER, variables={**variables, **facts})
        if "when" in task and not templar.evaluate_conditional(trusted(task["when"])):
            continue
        if "with_indexed_items" in task:
            loop_var = task.get("loop_control", {}).get("loop_var", "item")
            for index, item in enumerate(templar.template(trusted(task["with_indexed_items"]))):
                looped = Templar(loader=LOADER, variables={**variables, **facts, loop_var: [index, item]})
                facts.update(looped.template(trusted(fact)))
            continue
        facts.update(templar.template(trusted(fact)))
    return {str(k): str(v) for k, v in facts["env"].items()}


@pytest.mark.parametrize("version", VERSIONS)
def test_invoker_role_carries_our_settings_and_keeps_its_own(version: str, tmp_path: Path) -> None:
    ours = our_ansible_vars(version)
    full = role_env("invoker", version, variables_for(version, ours))
    own = role_env("invoker", version, variables_for(version, {**ours, "invoker_extraEnv": {}}))
    # Nothing OpenWhisk's role sets is overwritten by invoker_extraEnv (merged last by the role) ...
    changed = {k: (own[k], full[k]) for k in own if full.get(k) != own[k]}
    assert changed == {}
    # ... which only adds our keys.
    assert {k: full[k] for k in full.keys() - own.keys()} == ours["invoker_extraEnv"]
    assert full[f"{EV}0"] == "__OW_ALLOW_CONCURRENT=true"  # the role's own index 0, from our variable
    expected = component_environment(
        "invoker",
        CONTAINER,
        version,
        runtimes_manifest=ours["runtimes_manifest"],
    )
    manifest = json.loads(full.pop("RUNTIMES_MANIFEST"))
    assert manifest == json.loads(expected.pop("RUNTIMES_MANIFEST"))
    assert any(e["kind"] == ML_KIND for e in manifest["runtimes"]["python"])
    assert {k: full.get(k) for k in expected} == expected
    # The whole rendered environment through OpenWhisk's script: our properties, as HOCON keys.
    props = transform(version, full, tmp_path)
    ours_props = {config_property(k): v for k, v in expected.items()}
    assert {k: props.get(k) for k in ours_props} == ours_props
    assert props[f"{EV_PROP}.0"] == "__OW_ALLOW_CONCURRENT=true"
    assert extra_env_var_map(props)["__OW_ALLOW_CONCURRENT"] == "true"


@pytest.mark.parametrize("version", VERSIONS)
def test_concurrency_stays_on_when_the_role_index_0_says_false(version: str, tmp_path: Path) -> None:
    ours = our_ansible_vars(version)
    del ours["runtimes_enable_concurrency"]  # an operator keeps only invoker_extraEnv
    env = role_env("invoker", version, variables_for(version, ours))
    assert env[f"{EV}0"] == "__OW_ALLOW_CONCURRENT=false"
    props = transform(version, env, tmp_path)
    assert extra_env_var_map(props)["__OW_ALLOW_CONCURRENT"] == "true"  # index 1 comes later


def test_a_yaml_boolean_would_not_give_the_runtime_true() -> None:
    ours = {**our_ansible_vars("master"), "runtimes_enable_concurrency": True}
    env = role_env("invoker", "master", variables_for("master", ours))
    assert env[f"{EV}0"] == "__OW_ALLOW_CONCURRENT=True"  # why ansible_vars() writes the string "true"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("role", "component"), [("controller", "controller"), ("schedulers", "scheduler")])
def test_controller_and_scheduler_roles_carry_limits_manifest_and_log_store(
    version: str, role: str, component: str
) -> None:
    ours = our_ansible_vars(version)
    env = role_env(role, version, variables_for(version, ours))
    expected = component_environment(
        component,
        CONTAINER,
        version,
        runtimes_manifest=ours["runtimes_manifest"],
    )
    assert json.loads(env.pop("RUNTIMES_MANIFEST")) == json.loads(expected.pop("RUNTIMES_MANIFEST"))
    assert {k: env.get(k) for k in expected} == expected
    stock = role_env(role, version, variables_for(version, {}))
    assert stock["CONFIG_whisk_memory_max"] == ""  # OpenWhisk's default applies without us


@pytest.mark.parametrize("version", VERSIONS)
def test_our_variables_are_the_ones_openwhisk_reads(version: str) -> None:
    ours = our_ansible_vars(version)
    group_vars = LOADER.load(fixture(f"group_vars-all.{version}.yml"))
    # Not defined by ansible/group_vars/all, which would win over an inventory's group_vars ...
    assert set(ours) & set(group_vars) == set()
    # ... and each read by OpenWhisk's group_vars or a role.
    sources = {
        "group_vars": fixture(f"group_vars-all.{version}.yml"),
        "invoker": fixture(f"invoker-deploy.{version}.yml"),
        "controller": fixture(f"controller-deploy.{version}.yml"),
        "schedulers": fixture(f"schedulers-deploy.{version}.yml"),
    }
    readers = {name: [s for s, text in sources.items() if re.search(rf"\b{name}\b", text)] for name in ours}
    assert all(readers.values()), readers
    for limit in ("limit_action_memory_max", "limit_action_time_max", "limit_action_concurrency_max"):
        assert readers[limit] == ["invoker", "controller", "schedulers"]
    assert readers[TARGETS[version].client_ansible_var] == ["invoker"]
    other = TARGETS["2.0.0" if version == "master" else "master"].client_ansible_var
    assert other not in sources["invoker"]


@pytest.mark.parametrize("version", VERSIONS)
def test_invoker_pre_pull_selects_our_image_only_with_deprecated_false(version: str) -> None:
    tasks = LOADER.load(fixture(f"invoker-deploy.{version}.yml"))
    pull = next(t for t in tasks if t.get("name") == "pull runtime action images per manifest")
    manifest = merge_runtime(openwhisk_manifest(version), ml_runtime_entry(tag="1.0.0"))

    def pulled(m: dict[str, Any]) -> list[Any]:
        images: list[Any] = Templar(loader=LOADER, variables={"runtimesManifest": m}).template(
            trusted(pull["loop"])
        )
        return images

    assert {"prefix": "warmwhisk", "name": "runtime", "tag": "1.0.0"} in pulled(manifest)
    for entry in manifest["runtimes"]["python"]:
        if entry["kind"] == ML_KIND:
            del entry["deprecated"]
    # Without `deprecated` the entry is never pulled: older Ansible skips it silently, the
    # ansible-core installed here fails the whole task (and so the invoker's deployment).
    with pytest.raises(AnsibleUndefinedVariable, match="deprecated"):
        pulled(manifest)


# --- Helm (openwhisk-deploy-kube) ---------------------------------------------------------------


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: deep_merge(base.get(k), v) for k, v in over.items()}}
    return over


def leaves(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in values.items():
        out += leaves(value, (*prefix, key)) if isinstance(value, Mapping) else [(*prefix, key)]
    return out


def lookup(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def render_value(template: str, values: Mapping[str, Any]) -> str:
    """Go's text/template for `{{ .Values.path }}` and `{{ .Values.path | quote }}`, the only forms
    the templates below use for these values (Go prints booleans as true/false)."""

    def one(match: re.Match[str]) -> str:
        value = lookup({"Values": values}, match.group(1))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return json.dumps(text) if match.group(2) else text

    return re.sub(r"\{\{\s*\.(Values(?:\.\w+)+)\s*(\|\s*quote\s*)?\}\}", one, template)


@pytest.mark.parametrize("version", VERSIONS)
def test_helm_values_fit_the_chart(version: str) -> None:
    import jsonschema  # from ansible-lint's requirements; imported here so only this test needs it

    chart = yaml.safe_load(fixture("deploy-kube-values.master.yaml"))
    ours = helm_values(CONTAINER, version)
    missing = [".".join(path) for path in leaves(ours) if not _has_path(chart, path)]
    assert missing == []  # no key the chart does not have
    schema = json.loads(fixture("deploy-kube-values.schema.master.json"))
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator(schema).validate(deep_merge(chart, ours))
    as_string = {"whisk": {"limits": {"actions": {"concurrency": {"max": "64"}}}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema does check what we set
        jsonschema.Draft7Validator(schema).validate(deep_merge(deep_merge(chart, ours), as_string))


def _has_path(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    try:
        lookup(values, ".".join(path))
    except (KeyError, TypeError):
        return False
    return True


def test_helm_limits_reach_the_limit_variables_of_the_pods() -> None:
    block = re.search(
        r'define "openwhisk.limitsEnvVars".*?end -', fixture("deploy-kube-_helpers.master.tpl"), re.S
    )
    assert block
    pairs = re.findall(r'- name: "(\w+)"\s+value: (\{\{[^}]*\}\})', block.group(0))
    values = deep_merge(
        yaml.safe_load(fixture("deploy-kube-values.master.yaml")), helm_values(CONTAINER, "master")
    )
    env = {name: json.loads(render_value(template, values)) for name, template in pairs}
    assert Limits().environment().items() <= env.items()
    for pod in ("invoker", "controller", "scheduler"):
        assert 'include "openwhisk.limitsEnvVars"' in fixture(f"deploy-kube-{pod}-pod.master.yaml")


@pytest.mark.parametrize("version", VERSIONS)
def test_helm_invoker_env_and_options(version: str, tmp_path: Path) -> None:
    values = deep_merge(
        yaml.safe_load(fixture("deploy-kube-values.master.yaml")), helm_values(CONTAINER, version)
    )
    pod = fixture("deploy-kube-invoker-pod.master.yaml")
    index0 = re.search(rf'- name: "{EV}0"\s+value: "([^"]*)"', pod)
    assert index0 and render_value(index0.group(1), values) == "__OW_ALLOW_CONCURRENT=true"
    invoker_opts = re.search(r'- name: "INVOKER_OPTS"\s+value: "(\{\{ \.Values\.invoker\.options \}\}) ', pod)
    assert invoker_opts
    flags = shlex.split(render_value(invoker_opts.group(1), values))
    props = dict(flag[2:].split("=", 1) for flag in flags)
    env = {**CONTAINER.invoker_env(version), "CONFIG_whisk_spi_LogStoreProvider": LOG_DRIVER_LOG_STORE}
    assert props == transform(version, env, tmp_path)  # what CONFIG_ variables would have given
    assert [p for p in props if not declared(hocon_confs(version), p)] == []
    controller = fixture("deploy-kube-controller-pod.master.yaml")
    assert re.search(
        r'- name: "CONTROLLER_OPTS"\s+value: "\{\{ \.Values\.controller\.options \}\}', controller
    )
    assert values["controller"]["options"] == f"-Dwhisk.spi.LogStoreProvider={LOG_DRIVER_LOG_STORE}"


def test_intra_concurrency_doc_names_what_we_set() -> None:
    doc = fixture("intra-concurrency.master.md")
    assert LOG_DRIVER_LOG_STORE in doc
    for key in (
        "CONFIG_whisk_containerPool_pekkoClient",
        "CONFIG_whisk_concurrencyLimit_max",
        "__OW_ALLOW_CONCURRENT=true",
    ):
        assert key in doc


def test_fixtures_are_verbatim_and_listed() -> None:
    rows = re.findall(
        r"^\| (\S+) \| (apache/[\w-]+) \| ([0-9a-f]{40}) \| (\S+) \| `([0-9a-f]{16})` \|$",
        fixture("SOURCES.md"),
        re.M,
    )
    listed = {name: digest for name, _, _, _, digest in rows}
    files = {p.name for p in FIXTURES.iterdir()} - {"SOURCES.md"}
    assert files == set(listed)
    changed = [
        n for n, d in listed.items() if hashlib.sha256((FIXTURES / n).read_bytes()).hexdigest()[:16] != d
    ]
    assert changed == []
    assert {"openwhisk.LICENSE.txt", "openwhisk.NOTICE.txt", "openwhisk-deploy-kube.LICENSE.txt"} <= files
