"""Starting the runtime under test, as a local process or as a container, and talking to it.

Both kinds expose the same `RuntimeHandle`, so one contract suite runs against each.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from warmwhisk_runtime.contract import SENTINEL

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("WARMWHISK_IMAGE", "warmwhisk/runtime:dev")
TEST_LABEL = "warmwhisk.test"
# This test session's containers carry TEST_LABELS: teardown removes exactly those, so two
# sessions on one engine never remove each other's containers (`make clean-docker` sweeps all).
TEST_SESSION_LABEL = "warmwhisk.test.session"
TEST_LABELS = {TEST_LABEL: "1", TEST_SESSION_LABEL: uuid.uuid4().hex[:12]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def zip_action(files: dict[str, str | bytes]) -> str:
    """A base64 zip, as `wsk action create x action.zip --kind python:3` sends it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


def write_model_folder(folder: Path, model_py: str, seed: int = 0) -> Path:
    """A self-describing model folder: `model.py` (defining build()) and its seeded weights."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "model.py").write_text(model_py)
    namespace: dict[str, Any] = {}
    exec(model_py, namespace)
    torch.manual_seed(seed)
    save_file(namespace["build"]().state_dict(), str(folder / "model.safetensors"))
    return folder


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class RuntimeHandle:
    """HTTP client plus log access for one runtime under test."""

    kind = "abstract"

    def __init__(self, port: int, metrics_port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        self.session = requests.Session()

    # -- lifecycle ------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float = 20.0) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise AssertionError(f"runtime exited during start-up; logs: {self.logs()}")
            try:
                return requests.get(self.metrics_url + "/healthz", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
                return False

        wait_until(healthy, timeout_s, "the runtime to answer /healthz")

    def alive(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def logs(self) -> tuple[str, str]:
        raise NotImplementedError

    # -- protocol -------------------------------------------------------------------------
    def post(self, path: str, body: Any, timeout: float = 30.0) -> tuple[int, Any]:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        response = self.session.post(
            self.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=timeout
        )
        assert "Content-Length" in response.headers, "every response must carry Content-Length"
        return response.status_code, response.json()

    def init(
        self,
        code: str | None = None,
        main: str = "main",
        env: dict[str, Any] | None = None,
        timeout: float = 30.0,
        **extra: Any,
    ) -> tuple[int, Any]:
        value: dict[str, Any] = {"main": main, **extra}
        if code is not None:
            value["code"] = code
            value.setdefault("binary", False)
        value["env"] = env
        return self.post("/init", {"value": value}, timeout=timeout)

    def run(self, value: Any = None, timeout: float = 30.0, **context: Any) -> tuple[int, Any]:
        body: dict[str, Any] = dict(context)
        if value is not None:
            body["value"] = value
        return self.post("/run", body, timeout=timeout)

    def health(self) -> dict[str, Any]:
        return requests.get(self.metrics_url + "/healthz", timeout=5).json()

    def metrics(self) -> str:
        return requests.get(self.metrics_url + "/metrics", timeout=5).text

    def wait_for_sentinels(self, count: int, timeout_s: float = 10.0) -> tuple[str, str]:
        """Logs once both streams hold `count` sentinels (docker writes logs asynchronously)."""
        result: list[tuple[str, str]] = []

        def enough() -> bool:
            out, err = self.logs()
            result[:] = [(out, err)]
            return out.count(SENTINEL) >= count and err.count(SENTINEL) >= count

        wait_until(enough, timeout_s, f"{count} sentinels on each stream")
        return result[0]


class ProcessRuntime(RuntimeHandle):
    kind = "process"

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        port, metrics_port = free_port(), free_port()
        super().__init__(port, metrics_port)
        tmp.mkdir(parents=True, exist_ok=True)
        self._out_path, self._err_path = tmp / "stdout.log", tmp / "stderr.log"
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("__OW_") and not k.startswith("WARMWHISK_")
        }
        full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
        with open(self._out_path, "wb") as out, open(self._err_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "warmwhisk_runtime", "--host", "127.0.0.1", "--port", str(port),
                 "--metrics-port", str(metrics_port)],
                env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and its worker at once, as when a container dies."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for pid in [self.process.pid, *map(int, children)]:
            os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> tuple[str, str]:
        return self._out_path.read_text(errors="replace"), self._err_path.read_text(errors="replace")


class ContainerRuntime(RuntimeHandle):
    kind = "container"

    def __init__(
        self,
        docker_client: Any,
        env: dict[str, str] | None = None,
        volumes: dict | None = None,
        **options: Any,
    ) -> None:
        """``options``: more ``containers.run`` arguments (e.g. the invoker's ``cap_drop``)."""
        port, metrics_port = free_port(), free_port()
        super().__init__(port, metrics_port)
        self.container = docker_client.containers.run(
            IMAGE,
            command=["/opt/warmwhisk/bin/python", "-m", "warmwhisk_runtime", "--host", "127.0.0.1",
                     "--port", str(port), "--metrics-port", str(metrics_port)],
            environment=env or {}, network_mode="host", labels=TEST_LABELS,
            volumes=volumes or {}, detach=True, **options,
        )  # fmt: skip

    def alive(self) -> bool:
        self.container.reload()
        return self.container.status in ("created", "running")

    def stop(self) -> None:
        self.session.close()
        with contextlib.suppress(Exception):  # already gone is fine in teardown
            self.container.remove(force=True)

    def logs(self) -> tuple[str, str]:
        out = self.container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = self.container.logs(stdout=False, stderr=True).decode(errors="replace")
        return out, err
