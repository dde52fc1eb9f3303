"""For tools driving a stack (the demo, the benchmark, the tests): the stack as a child process,
and a small client of OpenWhisk's REST API (the same calls `wsk` and the npm client make)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


class StackProcess:
    """`python -m warmwhisk_devstack --port PORT --state-dir DIR ...flags`, its output in a log
    file; `labels` go on every container it starts; `start` waits for "ready", `stop` sends
    SIGTERM (the stack removes its containers)."""

    def __init__(
        self,
        port: int,
        state_dir: Path,
        flags: Sequence[str] = (),
        cwd: Path | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"devstack-{port}.log"
        self._command = [
            sys.executable, "-m", "warmwhisk_devstack", "--port", str(port), "--state-dir", str(state_dir),
            "--wskprops", str(state_dir / "wskprops"),
            *(arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")), *flags,
        ]  # fmt: skip
        self._cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key(self, namespace: str = "guest") -> str:
        """`uuid:secret` of a namespace (the stack writes one 0600 file per namespace)."""
        return (self.state_dir / "auth" / namespace).read_text().strip()

    def client(self, namespace: str = "guest") -> WhiskClient:
        return WhiskClient(self.api_host, self.key(namespace))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, ready_timeout_s: float = 120.0, alive: Callable[[], None] | None = None) -> StackProcess:
        """Start and wait for "ready"; `alive` is called while waiting (a progress indicator)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARMWHISK_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self._command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self._cwd,
            )
        deadline = time.monotonic() + ready_timeout_s
        while "ready" not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack was not ready within {ready_timeout_s:.0f} s:\n{self.log()}")
            if alive is not None:
                alive()
            time.sleep(0.1)
        return self

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM and wait (SIGKILL past `timeout_s`); the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> StackProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Invocation:
    """One blocking invocation: the HTTP status, the activation record (fetched when the wait ran
    out with 202), and the seconds until it ended (None when no record came within the wait)."""

    status: int
    record: dict[str, Any] | None
    seconds: float | None

    @property
    def ok(self) -> bool:
        return self.record is not None and bool(self.record["response"]["success"])

    @property
    def cold(self) -> bool:
        """The run started or initialised a container (OpenWhisk's `initTime` annotation)."""
        return self.record is not None and any(a["key"] == "initTime" for a in self.record["annotations"])


class WhiskClient:
    """OpenWhisk's REST API v1 for one namespace key; one keep-alive session per thread."""

    def __init__(self, api_host: str, key: str, timeout_s: float = 90.0) -> None:
        self.base = f"{api_host}/api/v1/namespaces/_"
        user, _, secret = key.partition(":")
        self._auth = (user, secret)
        self._timeout_s = timeout_s
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = self._auth
        return session

    def put_action(
        self,
        name: str,
        exec_: Mapping[str, Any],
        limits: Mapping[str, int] | None = None,
        parameters: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        body = {"exec": dict(exec_), "limits": dict(limits or {}), "parameters": list(parameters)}
        response = self.session.put(
            f"{self.base}/actions/{name}?overwrite=true", json=body, timeout=self._timeout_s
        )
        response.raise_for_status()
        return dict(response.json())

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        response = self.session.get(f"{self.base}/activations/{activation_id}", timeout=self._timeout_s)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def invoke(self, name: str, params: Mapping[str, Any], wait_s: float = 180.0) -> Invocation:
        """A blocking invocation; past OpenWhisk's blocking wait (202), the record is polled until
        `wait_s` after the start."""
        started, wall_started = time.perf_counter(), time.time()
        response = self.session.post(
            f"{self.base}/actions/{name}?blocking=true", json=dict(params), timeout=self._timeout_s
        )
        if response.status_code in (200, 502, 500) and "activationId" in response.json():
            return Invocation(response.status_code, response.json(), time.perf_counter() - started)
        if response.status_code != 202:
            return Invocation(response.status_code, None, None)
        activation_id = response.json()["activationId"]
        while time.perf_counter() - started < wait_s:
            with contextlib.suppress(requests.RequestException):
                record = self.activation(activation_id)
                if record is not None:  # its end, not when the poll saw it
                    return Invocation(202, record, max(0.0, record["end"] / 1000 - wall_started))
            time.sleep(0.25)
        return Invocation(202, None, None)
