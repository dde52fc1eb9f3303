"""warmwhisk_invoker_patch.config and the `config` CLI: the action containers' environment, docker
arguments and invoker keys; refusals (passwords, unsafe values, lowered limits); the ansible,
Helm and env outputs and their shapes. How OpenWhisk itself reads them is
test_invoker_patch_fidelity.py."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmwhisk_invoker_patch import (
    LOG_DRIVER_LOG_STORE,
    ML_KIND,
    ContainerConfig,
    Limits,
    ansible_vars,
    check_registry_address,
    component_environment,
    config_property,
    helm_values,
    java_options,
    load_manifest,
    merge_runtime,
    ml_runtime_entry,
)
from warmwhisk_invoker_patch.cli import main
from warmwhisk_protocol.credentials import has_credential
from warmwhisk_protocol.host import Env

FIXTURES = Path(__file__).parent / "fixtures" / "openwhisk"
ADDRESS = "redis://10.0.0.5:6379/0"
EV = "CONFIG_whisk_containerFactory_containerArgs_extraEnvVars_"


def routed(**kwargs: Any) -> ContainerConfig:
    return ContainerConfig(**{"registry_address": ADDRESS, "models_dir": "/srv/models", **kwargs})


def stock() -> dict[str, Any]:
    return load_manifest((FIXTURES / "runtimes.master.json").read_text())[0]


# --- ContainerConfig ---------------------------------------------------------------------------


def test_routed_container_environment_and_arguments() -> None:
    config = routed(prefix="ww-prod")
    assert config.environment() == {
        "__OW_ALLOW_CONCURRENT": "true",
        Env.MODE: "routed",
        Env.REGISTRY_URL: ADDRESS,
        Env.REDIS_PREFIX: "ww-prod",
    }
    assert config.docker_args() == {"volume": ["/srv/models:/models:ro"]}
    assert config.docker_run_args() == [
        "-e", "__OW_ALLOW_CONCURRENT=true",
        "-e", "WARMWHISK_MODE=routed",
        "-e", f"WARMWHISK_ROUTER_URL={ADDRESS}",
        "-e", "WARMWHISK_REDIS_PREFIX=ww-prod",
        "--volume", "/srv/models:/models:ro",
    ]  # fmt: skip


def test_invoker_keys_start_after_openwhisk_index_0() -> None:
    env = routed().container_factory_env()
    assert env == {
        f"{EV}1": "__OW_ALLOW_CONCURRENT=true",
        f"{EV}2": "WARMWHISK_MODE=routed",
        f"{EV}3": f"WARMWHISK_ROUTER_URL={ADDRESS}",
        f"{EV}4": "WARMWHISK_REDIS_PREFIX=warmwhisk",
        "CONFIG_whisk_containerFactory_containerArgs_extraArgs_volume_0": "/srv/models:/models:ro",
    }
    assert f"{EV}0" not in env


@pytest.mark.parametrize(
    ("target", "key", "other"),
    [("master", "pekkoClient", "akkaClient"), ("2.0.0", "akkaClient", "pekkoClient")],
)
def test_invoker_env_names_the_http_client_of_the_target(target: str, key: str, other: str) -> None:
    env = routed().invoker_env(target)
    assert env[f"CONFIG_whisk_containerPool_{key}"] == "true"
    assert f"CONFIG_whisk_containerPool_{other}" not in env
    with pytest.raises(ValueError, match="target"):
        routed().invoker_env("1.0.0")


def test_direct_mode_preloads_models_and_routes_nothing() -> None:
    config = ContainerConfig(models_dir="/srv/models", mode="direct", preload=("minilm", "bert/base"))
    assert config.environment() == {
        "__OW_ALLOW_CONCURRENT": "true",
        Env.MODE: "direct",
        "WARMWHISK_PRELOAD": "/models/minilm,/models/bert/base",
    }
    assert ContainerConfig(mode="direct").docker_args() == {}


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@10.0.0.5:6379/0",
        "redis://admin:s3cret@10.0.0.5:6379/0",
        "redis://admin@10.0.0.5:6379/0",
        "rediss://ns-a:s3cret@[::1]:6380/0",
        "redis://admin:s3cret@10.0.0.5:bad/0?x=s3cret",
    ],
)
def test_a_registry_address_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        routed(registry_address=url)
    message = str(raised.value)
    assert "s3cret" not in message and "admin" not in message
    assert "WARMWHISK_CREDENTIAL" in message and "every container" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:6379/0",
        "redis:///0",
        "redis://10.0.0.5:6379/0?password=s3cret",
        "redis://10.0.0.5:notaport/0",
        "redis://10.0.0.5:6379/zero",
        "redis://10.0.0.5:6379/0#x",
    ],
)
def test_malformed_registry_addresses_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_registry_address(url)
    assert "s3cret" not in str(raised.value)


def test_registry_addresses_accepted() -> None:
    for url in (ADDRESS, "rediss://redis.internal:6380/1", "redis://[fd00::5]:6379", "redis://r:6379/"):
        assert check_registry_address(url) == url


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"registry_address": None}, "routed mode needs"),
        ({"mode": "direct"}, "direct mode routes nothing"),
        ({"mode": "fast"}, "mode is one of"),
        ({"preload": ("minilm",)}, "preload is for direct mode"),
        ({"models_dir": "srv/models"}, "absolute"),
        ({"models_dir": "/srv/models:rw"}, "':'"),
        ({"models_dir": "/srv/my models"}, "characters"),
        ({"models_dir": "/srv/$HOME"}, "characters"),
        ({"prefix": "a b"}, "prefix"),
        ({"prefix": "warm*"}, "prefix"),
        ({"prefix": "it's"}, "characters"),
    ],
)
def test_settings_the_invoker_cannot_carry_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        routed(**kwargs)


@pytest.mark.parametrize("name", ["../etc", "/abs", "a/../b", "a,b", "", "a b"])
def test_preload_names_stay_under_models(name: str) -> None:
    with pytest.raises(ValueError):
        ContainerConfig(models_dir="/srv/models", mode="direct", preload=(name,))
    with pytest.raises(ValueError, match="needs models_dir"):
        ContainerConfig(mode="direct", preload=("minilm",))


# --- limits and components ---------------------------------------------------------------------


def test_limits_only_raise_openwhisk_maxima() -> None:
    limits = Limits(memory_max_mb=8192, time_max_s=900, concurrency_max=32)
    assert limits.environment() == {
        "CONFIG_whisk_memory_max": "8192 m",
        "CONFIG_whisk_timeLimit_max": "900 s",
        "CONFIG_whisk_concurrencyLimit_max": "32",
    }
    assert limits.ansible_vars() == {
        "limit_action_memory_max": "8192 m",
        "limit_action_time_max": "900 s",
        "limit_action_concurrency_max": 32,
    }
    for lowered in ({"memory_max_mb": 256}, {"time_max_s": 60}, {"concurrency_max": 1}):
        with pytest.raises(ValueError, match="lower"):
            Limits(**lowered)


def test_component_environments() -> None:
    manifest = merge_runtime(stock(), ml_runtime_entry())
    invoker = component_environment("invoker", routed(), "master", runtimes_manifest=manifest)
    controller = component_environment("controller", routed(), "master", runtimes_manifest=manifest)
    scheduler = component_environment("scheduler", routed(), "master")
    assert routed().invoker_env("master").items() <= invoker.items()
    assert Limits().environment().items() <= invoker.items()
    assert invoker["CONFIG_whisk_spi_LogStoreProvider"] == LOG_DRIVER_LOG_STORE
    assert json.loads(invoker["RUNTIMES_MANIFEST"]) == manifest
    assert set(controller) == {
        *Limits().environment(),
        "CONFIG_whisk_spi_LogStoreProvider",
        "RUNTIMES_MANIFEST",
    }
    assert scheduler == Limits().environment()
    keep = component_environment("invoker", routed(), "master", log_store=None)
    assert "CONFIG_whisk_spi_LogStoreProvider" not in keep
    with pytest.raises(ValueError):
        component_environment("invoker", routed(), "master", log_store="not a class")
    with pytest.raises(ValueError):
        component_environment("gateway", routed(), "master")


# --- ansible and helm --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "client_var"),
    [("master", "container_pool_pekko_client"), ("2.0.0", "container_pool_akka_client")],
)
def test_ansible_vars(target: str, client_var: str) -> None:
    variables = ansible_vars(routed(), target, stock())
    assert list(variables) == [
        "runtimes_manifest",
        "runtimes_enable_concurrency",
        client_var,
        "limit_action_memory_max",
        "limit_action_time_max",
        "limit_action_concurrency_max",
        "userLogs_spi",
        "invoker_extraEnv",
    ]
    assert variables["runtimes_enable_concurrency"] == "true"  # a string: see the fidelity test
    assert variables[client_var] is True
    assert variables["invoker_extraEnv"] == routed().container_factory_env()
    assert any(e["kind"] == ML_KIND for e in variables["runtimes_manifest"]["runtimes"]["python"])
    # Already merged, or merged here: the same result.
    again = ansible_vars(routed(), target, variables["runtimes_manifest"])
    assert again == variables


def test_ansible_vars_refuse_a_broken_manifest_and_jinja() -> None:
    broken = stock()
    broken["runtimes"]["python"][1]["default"] = True
    with pytest.raises(ValueError, match="family-default"):
        ansible_vars(routed(), "master", broken)
    templated = stock()
    templated["description"].append("{{ lookup('env', 'HOME') }}")
    with pytest.raises(ValueError, match="Jinja"):
        ansible_vars(routed(), "master", templated)


def test_helm_values() -> None:
    values = helm_values(routed(), "2.0.0", limits=Limits(concurrency_max=16))
    assert values["whisk"] == {
        "runtimes": "runtimes-warmwhisk.json",
        "limits": {
            "actions": {"memory": {"max": "4096 m"}, "time": {"max": "600 s"}, "concurrency": {"max": 16}}
        },
    }
    assert values["invoker"]["containerFactory"] == {"impl": "docker", "enableConcurrency": True}
    flags = values["invoker"]["options"].split()
    assert "-Dwhisk.container-pool.akka-client=true" in flags
    assert "-Dwhisk.container-factory.container-args.extra-env-vars.1=__OW_ALLOW_CONCURRENT=true" in flags
    assert "-Dwhisk.container-factory.container-args.extra-args.volume.0=/srv/models:/models:ro" in flags
    assert values["controller"]["options"] == f"-Dwhisk.spi.LogStoreProvider={LOG_DRIVER_LOG_STORE}"
    assert "controller" not in helm_values(routed(), "master", log_store=None)


def test_helm_kubernetes_factory_cannot_carry_the_model_volume() -> None:
    with pytest.raises(ValueError, match="ignores extra-args"):
        helm_values(routed(), "master", container_factory="kubernetes")
    values = helm_values(routed(models_dir=None), "master", container_factory="kubernetes")
    assert values["invoker"]["containerFactory"]["impl"] == "kubernetes"
    with pytest.raises(ValueError):
        helm_values(routed(), "master", runtimes_file="../x.json")


@pytest.mark.parametrize(
    ("name", "prop"),
    [  # the examples in transformEnvironment.sh's own header
        ("CONFIG_whisk_loadbalancer_invokerBusyThreshold", "whisk.loadbalancer.invoker-busy-threshold"),
        ("CONFIG_pekko_remote_netty_tcp_bindPort", "pekko.remote.netty.tcp.bind-port"),
        ("CONFIG_whisk_spi_LogStoreProvider", "whisk.spi.LogStoreProvider"),
        (
            "CONFIG_whisk_containerFactory_containerArgs_extraArgs_volume_0",
            "whisk.container-factory.container-args.extra-args.volume.0",
        ),
    ],
)
def test_config_property(name: str, prop: str) -> None:
    assert config_property(name) == prop


def test_java_options_refuse_unsafe_values() -> None:
    assert java_options({"CONFIG_a_bC": "x=y"}) == "-Da.b-c=x=y"
    for value in ("a b", "$(id)", "'x'", "a;b"):
        with pytest.raises(ValueError):
            java_options({"CONFIG_a": value})


# --- nothing secret anywhere -------------------------------------------------------------------


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_no_generated_value_holds_a_credential() -> None:
    config = routed()
    outputs: list[object] = [
        ansible_vars(config, "master", stock()),
        helm_values(config, "master"),
        *(
            component_environment(c, config, "2.0.0", runtimes_manifest=stock())
            for c in ("invoker", "controller", "scheduler")
        ),
    ]
    urls = [u for s in _strings(outputs) for u in re.findall(r"rediss?://[^\s,]+", s)]
    assert urls and not any(has_credential(u) for u in urls)
    assert not any("WARMWHISK_CREDENTIAL" in s or "password" in s.lower() for s in _strings(outputs))


# --- the CLI -----------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


BASE = ("config", "--registry-address", ADDRESS, "--models-dir", "/srv/models")


def test_cli_env() -> None:
    code, out, _ = run(*BASE, "--target", "master", "--format", "env")
    assert code == 0
    lines = out.splitlines()
    assert lines == [f"{k}={v}" for k, v in component_environment("invoker", routed(), "master").items()]
    code, out, _ = run(
        *BASE,
        "--target",
        "master",
        "--format",
        "env",
        "--component",
        "controller",
        "--runtimes",
        str(FIXTURES / "runtimes.master.json"),
    )
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert code == 0 and ML_KIND in json.loads(env["RUNTIMES_MANIFEST"])["runtimes"]["python"][2]["kind"]


def test_cli_ansible() -> None:
    code, out, _ = run(
        *BASE,
        "--target",
        "2.0.0",
        "--format",
        "ansible",
        "--runtimes",
        str(FIXTURES / "runtimes.2.0.0.json"),
        "--tag",
        "1.0.0",
    )
    assert code == 0 and out.startswith("# warmwhisk invoker patch")
    variables = yaml.safe_load(out)
    openwhisk = load_manifest((FIXTURES / "runtimes.2.0.0.json").read_text())[0]
    assert variables == ansible_vars(routed(), "2.0.0", openwhisk, entry=ml_runtime_entry(tag="1.0.0"))
    code, _, err = run(*BASE, "--target", "master", "--format", "ansible")
    assert code == 1 and "--runtimes" in err


def test_cli_helm_and_options() -> None:
    code, out, _ = run(
        *BASE, "--target", "2.0.0", "--format", "helm", "--keep-log-store", "--concurrency-max", "8"
    )
    assert code == 0
    assert yaml.safe_load(out) == helm_values(
        routed(), "2.0.0", limits=Limits(concurrency_max=8), log_store=None
    )
    code, _, err = run(*BASE, "--target", "master", "--format", "helm", "--container-factory", "kubernetes")
    assert code == 1 and "extra-args" in err


def test_cli_refuses_a_password_without_printing_it() -> None:
    code, out, err = run(
        "config",
        "--registry-address",
        "redis://ns:hunter2@10.0.0.5:6379/0",
        "--target",
        "master",
        "--format",
        "env",
    )
    assert code == 1 and out == "" and "hunter2" not in err and "refusing" in err
    code, _, err = run(*BASE, "--target", "master", "--format", "env", "--memory-max-mb", "128")
    assert code == 1 and "lower" in err
