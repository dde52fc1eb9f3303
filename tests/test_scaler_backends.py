"""Model-host backends against the real thing: the Docker engine with the runtime image, and local
runtime processes. Each test runs once per backend where the behaviour is shared.

Every container carries the test's own owner label (``warmwhisk-test-<random>``) and
``warmwhisk.test=1``; the fixture removes whatever the owner still has, and stops every process
host still recorded in the test's state folder.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from runtime_harness import IMAGE, TEST_LABEL, TEST_LABELS, wait_until
from warmwhisk_protocol.host import Env
from warmwhisk_scaler.backends import BackendError, HostBackend, HostSpec, ProcessBackend, RunningHost
from warmwhisk_scaler.backends.docker_backend import LABEL_OWNER, DockerBackend

READY_S = 30.0


class Backends:
    """Makes backend objects of one kind over one owner; each new object is a "restarted scaler"."""

    def __init__(self, kind: str, owner: str, state_dir: Path, client: Any = None) -> None:
        self.kind, self.owner, self.state_dir, self.client = kind, owner, state_dir, client

    def new(self) -> HostBackend:
        if self.kind == "docker":
            return DockerBackend(
                self.client, IMAGE, owner=self.owner, extra_labels=TEST_LABELS, stop_timeout_s=2
            )
        return ProcessBackend(self.state_dir, owner=self.owner, stop_timeout_s=2.0)

    def kill(self, host: RunningHost) -> None:
        """The host dies behind the backend's back (SIGKILL), as if it crashed."""
        if self.kind == "docker":
            self.client.api.kill(host.host_id)
            wait_until(lambda: not self.client.api.inspect_container(host.host_id)["State"]["Running"])
        else:
            pid = self.record(host.host_id)["pid"]
            os.killpg(pid, signal.SIGKILL)
            wait_until(lambda: _proc_state(pid) in (None, "Z"), what=f"pid {pid} to die")

    def exists(self, host_id: str) -> bool:
        """Whether the engine still holds anything of the host (a container, a record)."""
        if self.kind == "docker":
            found = self.client.containers.list(all=True, filters={"label": f"warmwhisk.host-id={host_id}"})
            return bool(found)
        return (self.state_dir / f"{host_id}.json").exists()

    def record(self, host_id: str) -> dict[str, Any]:
        return json.loads((self.state_dir / f"{host_id}.json").read_text())

    def cleanup(self) -> None:
        if self.kind == "docker":
            for container in self.client.containers.list(
                all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}
            ):
                container.remove(force=True)
        else:
            ProcessBackend(self.state_dir, owner=self.owner, stop_timeout_s=1.0).reconcile(lambda _: False)


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    client = request.getfixturevalue("docker_client") if request.param == "docker" else None
    made = Backends(request.param, f"warmwhisk-test-{secrets.token_hex(4)}", tmp_path / "hosts", client)
    yield made
    made.cleanup()


@pytest.fixture
def docker_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    made = Backends(
        "docker", f"warmwhisk-test-{secrets.token_hex(4)}", tmp_path, request.getfixturevalue("docker_client")
    )
    yield made
    made.cleanup()


def spec(pool: str = "guest/classify", **kwargs: Any) -> HostSpec:
    """A host in direct mode (the backends start whatever runtime they are given) with its id in
    its environment, as `HostLaunch.environment()` puts it."""
    host_id = f"h-test-{secrets.token_hex(4)}"
    env = {Env.KEEPALIVE_S: "30", Env.HOST_ID: host_id, **kwargs.pop("env", {})}
    return HostSpec(host_id=host_id, pool=pool, env=env, **kwargs)


def healthy(host: RunningHost) -> bool:
    try:
        return requests.get(f"http://{host.metrics_address}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _proc_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()[0].decode()


def _pids_with_env(entry: str) -> list[int]:
    """Live processes whose environment holds ``entry`` (e.g. ``WARMWHISK_HOST_ID=<id>``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in environ and _proc_state(int(proc.name)) not in (None, "Z"):
            found.append(int(proc.name))
    return found


# -- shared behaviour ---------------------------------------------------------------------------------


def test_hosts_start_answer_list_are_adopted_and_stop_idempotently(backends: Backends) -> None:
    scaler = backends.new()
    before = time.time()
    one, two = scaler.start(spec("guest/a")), scaler.start(spec("guest/b"))
    after = time.time()

    assert scaler.wait_ready(one, READY_S) and scaler.wait_ready(two, READY_S)
    assert healthy(one) and healthy(two)
    for host in (one, two):
        assert host.owner == backends.owner
        assert before <= host.started_at <= after
        assert host.address.startswith("127.0.0.1:") and host.metrics_address.startswith("127.0.0.1:")
        # The action port answers HTTP too (404 for a GET of /, but it answers).
        assert requests.get(f"http://{host.address}/", timeout=5).status_code < 500
    ports = {h.address for h in (one, two)} | {h.metrics_address for h in (one, two)}
    assert len(ports) == 4
    assert sorted(scaler.running(), key=lambda h: h.host_id) == sorted([one, two], key=lambda h: h.host_id)

    # A restarted scaler: a new backend object over the same engine finds both, with their ports.
    restarted = backends.new()
    assert set(restarted.running()) == {one, two}
    adopted, removed = restarted.reconcile(lambda host: True)
    assert set(adopted) == {one, two} and removed == []
    assert restarted.wait_ready(one, 5.0)

    restarted.stop(one.host_id)
    restarted.stop(one.host_id)  # idempotent
    scaler.stop(one.host_id)  # the old object too: nothing left to stop
    restarted.stop("h-test-never-started")
    assert restarted.running() == [two] and scaler.running() == [two]
    assert not healthy(one) and not backends.exists(one.host_id)
    if backends.kind == "process":
        assert _pids_with_env(f"WARMWHISK_HOST_ID={one.host_id}") == []  # the whole group is gone

    scaler.stop(two.host_id)
    assert scaler.running() == [] and restarted.running() == []


def test_reconcile_removes_dead_and_rejected_hosts(backends: Backends) -> None:
    scaler = backends.new()
    dead, live, rejected = scaler.start(spec()), scaler.start(spec()), scaler.start(spec("guest/old"))
    for host in (dead, live, rejected):
        assert scaler.wait_ready(host, READY_S)

    backends.kill(dead)
    started = time.monotonic()
    assert not scaler.wait_ready(dead, READY_S)  # the exit is noticed, not waited out
    assert time.monotonic() - started < 3.0

    restarted = backends.new()
    assert {h.host_id for h in restarted.running()} == {live.host_id, rejected.host_id}
    adopted, removed = restarted.reconcile(lambda host: host.pool != "guest/old")
    assert adopted == [live]
    assert sorted(removed) == sorted([dead.host_id, rejected.host_id])
    assert not backends.exists(dead.host_id) and not backends.exists(rejected.host_id)
    assert not healthy(rejected) and healthy(live)
    assert restarted.reconcile(lambda host: True) == ([live], [])


def test_host_that_fails_at_start_is_not_ready_and_is_stale(backends: Backends) -> None:
    scaler = backends.new()
    broken = scaler.start(spec(env={"WARMWHISK_MAX_CONCURRENT": "many"}))  # the runtime refuses it
    started = time.monotonic()
    assert not scaler.wait_ready(broken, READY_S)
    assert time.monotonic() - started < 10.0
    wait_until(
        lambda: "WARMWHISK_MAX_CONCURRENT" in scaler.logs(broken.host_id), what="the error in the logs"
    )
    assert scaler.running() == []
    assert backends.new().reconcile(lambda host: True) == ([], [broken.host_id])
    assert not backends.exists(broken.host_id)
    assert scaler.logs(broken.host_id) == ""


# -- process backend ----------------------------------------------------------------------------------


def test_process_records_of_dead_or_foreign_pids_are_dropped_without_killing(tmp_path: Path) -> None:
    owner = f"warmwhisk-test-{secrets.token_hex(4)}"
    backend = ProcessBackend(tmp_path, owner=owner)
    bystander = subprocess.Popen(["sleep", "60"])  # alive, but not a runtime
    finished = subprocess.Popen(["true"])
    finished.wait()
    try:
        for host_id, pid in (("h-foreign", bystander.pid), ("h-dead", finished.pid)):
            record = {"host_id": host_id, "pool": "p", "owner": owner, "pid": pid, "port": 1,
                      "metrics_port": 2, "started_at": 0.0, "proc_start": None}  # fmt: skip
            (tmp_path / f"{host_id}.json").write_text(json.dumps(record))
        other = {"host_id": "h-other", "pool": "p", "owner": "someone-else", "pid": finished.pid,
                 "port": 1, "metrics_port": 2, "started_at": 0.0, "proc_start": None}  # fmt: skip
        (tmp_path / "h-other.json").write_text(json.dumps(other))

        assert backend.running() == []
        assert backend.reconcile(lambda host: True) == ([], ["h-dead", "h-foreign"])
        assert bystander.poll() is None  # never signalled
        assert (tmp_path / "h-other.json").exists()  # another owner's record is not ours to drop
        assert not (tmp_path / "h-foreign.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


# -- docker backend -----------------------------------------------------------------------------------


@pytest.mark.docker
def test_docker_limits_labels_and_read_only_models(docker_backends: Backends, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"w" * 16)
    models.chmod(0o777)  # only the read-only mount may stop uid 1000 from writing here
    (models / "weights.bin").chmod(0o644)
    backend = docker_backends.new()
    host = backend.start(spec(memory_bytes=256 * 1024 * 1024, cpus=0.5, model_dir=str(models)))
    assert backend.wait_ready(host, READY_S)

    attrs = docker_backends.client.api.inspect_container(host.host_id)
    assert attrs["Name"] == f"/{host.host_id}"
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert attrs["HostConfig"]["MemorySwap"] == 256 * 1024 * 1024
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    [mount] = attrs["Mounts"]
    assert (mount["Destination"], mount["RW"], mount["Source"]) == ("/models", False, str(models))
    labels = attrs["Config"]["Labels"]
    assert labels[TEST_LABEL] == "1"
    assert labels["warmwhisk.owner"] == docker_backends.owner
    assert labels["warmwhisk.host-id"] == host.host_id
    assert labels["warmwhisk.pool"] == host.pool
    assert f"127.0.0.1:{labels['warmwhisk.port']}" == host.address
    assert f"127.0.0.1:{labels['warmwhisk.metrics-port']}" == host.metrics_address
    assert float(labels["warmwhisk.started-at"]) == host.started_at
    assert {"WARMWHISK_KEEPALIVE_S=30", f"WARMWHISK_HOST_ID={host.host_id}"} <= set(attrs["Config"]["Env"])

    probe = (
        "import pathlib\n"
        "print('read', pathlib.Path('/models/weights.bin').read_bytes() == b'w' * 16)\n"
        "for name in ('memory.max', 'memory/memory.limit_in_bytes'):  # cgroup v2, v1\n"
        "    limit = pathlib.Path('/sys/fs/cgroup', name)\n"
        "    if limit.exists():\n"
        "        print('memory limit', limit.read_text().strip())\n"
        "try:\n"
        "    pathlib.Path('/models/new').write_text('x')\n"
        "    print('write ok')\n"
        "except OSError as exc:\n"
        "    print('write failed', exc.strerror)\n"
    )
    code, output = docker_backends.client.containers.get(host.host_id).exec_run(
        ["/opt/warmwhisk/bin/python", "-c", probe]
    )
    text = output.decode()
    assert code == 0, text
    assert "read True" in text
    assert "write failed Read-only file system" in text
    assert "memory limit 268435456" in text
    assert not (models / "new").exists()


@pytest.mark.docker
def test_docker_hosts_listen_and_advertise_on_the_bind_address_only(docker_backends: Backends) -> None:
    """In a cluster hosts bind to the machine's private address (127.0.0.2 stands in for it: every
    127/8 address is the loopback interface's), advertise it, and are found there after a restart."""

    def backend() -> DockerBackend:
        return DockerBackend(
            docker_backends.client, IMAGE, owner=docker_backends.owner, extra_labels=TEST_LABELS,
            stop_timeout_s=2, bind_host="127.0.0.2",
        )  # fmt: skip

    host = backend().start(spec())
    assert backend().wait_ready(host, READY_S)
    port = int(host.address.rsplit(":", 1)[1])
    assert host.address == f"127.0.0.2:{port}" and host.metrics_address.startswith("127.0.0.2:")
    env = set(docker_backends.client.api.inspect_container(host.host_id)["Config"]["Env"])
    assert f"WARMWHISK_ADVERTISE=127.0.0.2:{port}" in env
    assert healthy(host)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)  # not on another address
    assert [h.address for h in backend().running()] == [host.address]


@pytest.mark.docker
def test_docker_unknown_image_is_a_clear_error(docker_backends: Backends) -> None:
    backend = DockerBackend(
        docker_backends.client, "warmwhisk/no-such-image:never", owner=docker_backends.owner,
        extra_labels=TEST_LABELS,
    )  # fmt: skip
    wanted = spec()
    with pytest.raises(BackendError, match=r"warmwhisk/no-such-image:never.*image not found") as caught:
        backend.start(wanted)
    assert wanted.host_id in str(caught.value)
    assert not docker_backends.exists(wanted.host_id)
    assert backend.running() == []


def test_docker_engine_down_is_a_clear_error(tmp_path: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    backend = DockerBackend(client, IMAGE, owner="warmwhisk-test-nobody")
    with pytest.raises(BackendError, match="Docker engine does not answer"):
        backend.start(spec())
    with pytest.raises(BackendError, match="Docker engine does not answer"):
        backend.running()
    client.close()


# -- the interface ------------------------------------------------------------------------------------


def test_specs_and_labels_are_validated(tmp_path: Path) -> None:
    for bad in ("", "../etc", "a b", "-dash-first"):
        with pytest.raises(ValueError, match="host_id"):
            HostSpec(host_id=bad, pool="p", env={})
    with pytest.raises(ValueError, match="memory_bytes"):
        HostSpec(host_id="h", pool="p", env={}, memory_bytes=0)
    with pytest.raises(ValueError, match=r"warmwhisk\.owner"):
        DockerBackend(None, IMAGE, extra_labels={"warmwhisk.owner": "x"})  # type: ignore[arg-type]
    backend: HostBackend = ProcessBackend(tmp_path)  # both classes satisfy the protocol (type-checked)
    assert backend.running() == []
