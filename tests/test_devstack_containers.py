"""The dev stack's invoker on real containers: OpenWhisk's pool rules seen from outside (the
activations' `initTime` says which runs started a container; Docker's labels count them)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack_harness import RunningStack, running_stack
from runtime_harness import wait_until
from warmwhisk_devstack.stack import stack_id

pytestmark = pytest.mark.docker

IDLE_S = 4.0
ACTION = """
import time

VERSION = "{version}"

def main(args):
    time.sleep(args.get("sleep", 0))
    print("ran", args.get("tag"))
    return {{"version": VERSION, "tag": args.get("tag")}}
"""


def containers(stack: RunningStack, docker_client: Any) -> int:
    label = f"warmwhisk.devstack={stack_id(stack.state_dir)}"
    return len(docker_client.containers.list(filters={"label": label}))


def create(
    stack: RunningStack, name: str, version: str = "1", concurrency: int = 1, update: bool = False
) -> dict:
    body = {"exec": {"kind": "python:3-ml", "code": ACTION.format(version=version)},
            "limits": {"concurrency": concurrency, "timeout": 30_000}}  # fmt: skip
    response = stack.session().put(f"{stack.base}/namespaces/_/actions/{name}?overwrite={update}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def invoke(stack: RunningStack, name: str, **payload: Any) -> dict:
    response = requests.post(
        f"{stack.base}/namespaces/_/actions/{name}?blocking=true",
        json=payload,
        auth=stack.auth(),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def cold(activation: dict) -> bool:
    return any(a["key"] == "initTime" for a in activation["annotations"])


def burst(stack: RunningStack, name: str, count: int, sleep: float) -> list[dict]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: invoke(stack, name, sleep=sleep, tag=i), range(count)))


@pytest.fixture(scope="module")
def warm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("warmwhisk") / "stack", "--idle-timeout", str(IDLE_S)
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def stock_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    flags = ("--stock", "--idle-timeout", str(IDLE_S))
    with running_stack(tmp_path_factory.mktemp("stock") / "stack", *flags) as stack:
        yield stack


def test_prewarms_wait_at_start_and_the_first_activation_takes_one(warm_stack, docker_client) -> None:
    wait_until(lambda: containers(warm_stack, docker_client) == 2, timeout_s=60, what="the two stem cells")
    create(warm_stack, "first")
    activation = invoke(warm_stack, "first", tag="a")
    assert cold(activation) and activation["response"]["result"]["version"] == "1"
    # Taken, not added: one prewarm became the action's container, and one is started to refill.
    wait_until(lambda: containers(warm_stack, docker_client) == 3, timeout_s=60, what="the refill")


def test_a_warm_container_is_reused_and_an_update_never_reaches_the_old_one(warm_stack) -> None:
    create(warm_stack, "reuse")
    assert cold(invoke(warm_stack, "reuse"))
    again = invoke(warm_stack, "reuse")
    assert not cold(again) and again["response"]["result"]["version"] == "1"
    create(warm_stack, "reuse", version="2", update=True)
    updated = invoke(warm_stack, "reuse")
    assert cold(updated), "a new version starts its own container"
    assert updated["response"]["result"]["version"] == "2" and updated["version"] == "0.0.2"


def test_concurrency_slots_serve_a_burst_from_one_container(warm_stack) -> None:
    create(warm_stack, "slots", concurrency=4)
    activations = burst(warm_stack, "slots", 4, sleep=1.0)
    assert sorted(a["response"]["result"]["tag"] for a in activations) == [0, 1, 2, 3]
    assert sum(cold(a) for a in activations) == 1, "one container initialised, three runs waited for it"


def test_idle_containers_go_after_the_time_out(warm_stack, docker_client) -> None:
    create(warm_stack, "idle")
    invoke(warm_stack, "idle")
    wait_until(
        lambda: containers(warm_stack, docker_client) == 2, timeout_s=IDLE_S * 5, what="only the prewarms"
    )
    assert cold(invoke(warm_stack, "idle")), "a removed container is not reused"


def test_logs_of_each_activation_are_its_own(warm_stack) -> None:
    create(warm_stack, "logs", concurrency=4)
    activations = burst(warm_stack, "logs", 4, sleep=0.2)
    session = warm_stack.session()
    for activation in activations:
        url = f"{warm_stack.base}/namespaces/_/activations/{activation['activationId']}/logs"
        wait_until(lambda url=url: session.get(url).json()["logs"], timeout_s=10, what="the logs")
        [line] = session.get(url).json()["logs"]
        assert line.endswith(f"stdout: ran {activation['response']['result']['tag']}")


def test_stock_settings_give_one_activation_per_container(stock_stack, docker_client) -> None:
    wait_until(lambda: containers(stock_stack, docker_client) == 2, timeout_s=60, what="the two stem cells")
    create(stock_stack, "stock")
    activations = burst(stock_stack, "stock", 3, sleep=1.0)
    assert sum(cold(a) for a in activations) == 3
    # Concurrency above 1 is refused with OpenWhisk's text, as its default limits do.
    body = {"exec": {"kind": "python:3-ml", "code": ACTION.format(version=1)}, "limits": {"concurrency": 2}}
    refused = stock_stack.session().put(f"{stock_stack.base}/namespaces/_/actions/many", json=body)
    assert (
        refused.status_code == 400
        and refused.json()["error"] == "concurrency 2 exceeds allowed threshold of 1"
    )


def test_stopping_removes_every_container_and_a_restart_loses_nothing(tmp_path: Path, docker_client) -> None:
    with running_stack(tmp_path / "stack", "--stock") as stack:
        create(stack, "kept")
        activation = invoke(stack, "kept", tag="before")
        key = stack.key()
        assert containers(stack, docker_client) >= 1
    assert containers(stack, docker_client) == 0
    assert stack.process.returncode == 0, stack.log()
    with running_stack(tmp_path / "stack", "--stock") as again:
        assert again.key() == key, "the same key after a restart"
        session = again.session()
        stored = session.get(f"{again.base}/namespaces/_/activations/{activation['activationId']}").json()
        assert stored["response"]["result"] == {"version": "1", "tag": "before"}
        assert session.get(f"{again.base}/namespaces/_/actions/kept").json()["version"] == "0.0.1"
        assert invoke(again, "kept", tag="after")["response"]["result"]["tag"] == "after"


LOUD = """
def main(args):
    for i in range(args.get("lines", 1)):
        print(f"{args['tag']} line {i} " + "x" * 1000)
    return {"tag": args["tag"]}
"""


def logs_of(stack: RunningStack, activation: dict) -> list[str]:
    url = f"{stack.base}/namespaces/_/activations/{activation['activationId']}/logs"
    session = stack.session()
    wait_until(lambda: session.get(url).json()["logs"], timeout_s=20, what="the logs")
    return session.get(url).json()["logs"]


def test_logs_are_cut_at_the_action_limit_and_the_next_run_still_gets_its_own(stock_stack) -> None:
    body = {"exec": {"kind": "python:3-ml", "code": LOUD}, "limits": {"logs": 1}}
    assert stock_stack.session().put(f"{stock_stack.base}/namespaces/_/actions/loud", json=body).ok
    loud = logs_of(stock_stack, invoke(stock_stack, "loud", tag="big", lines=2000))  # ~2 MB printed
    assert loud[-1] == "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."
    assert 900 <= len(loud) < 1100 and "big line 0 " in loud[0]
    quiet = logs_of(stock_stack, invoke(stock_stack, "loud", tag="small", lines=2))
    assert [line.split("stdout: ")[1][:12] for line in quiet] == ["small line 0", "small line 1"]
    # At a limit of 0 nothing is kept, and the following run's logs are still its own.
    body["limits"] = {"logs": 0}
    assert (
        stock_stack.session()
        .put(f"{stock_stack.base}/namespaces/_/actions/loud?overwrite=true", json=body)
        .ok
    )
    silent = invoke(stock_stack, "loud", tag="none", lines=3)
    body["limits"] = {"logs": 1}
    assert (
        stock_stack.session()
        .put(f"{stock_stack.base}/namespaces/_/actions/loud?overwrite=true", json=body)
        .ok
    )
    after = logs_of(stock_stack, invoke(stock_stack, "loud", tag="after", lines=1))
    assert len(after) == 1 and "after line 0" in after[0]
    url = f"{stock_stack.base}/namespaces/_/activations/{silent['activationId']}/logs"
    assert stock_stack.session().get(url).json()["logs"] == []
