"""The dev stack for tests, started as a user starts it (`python -m warmwhisk_devstack`) on a free
port with its own state folder, every container it starts labelled as a test's; stopped with
SIGTERM (it then removes its containers, the scaler's model hosts, Redis and the scaler)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from runtime_harness import IMAGE, TEST_LABELS, free_port

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "build" / "models"
OTHER_NAMESPACE = "other"


@dataclass
class RunningStack:
    port: int
    state_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def api_host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.api_host}/api/v1"

    def key(self, namespace: str = "guest") -> str:
        """`uuid:secret` of a namespace (the stack writes one 0600 file per namespace)."""
        return (self.state_dir / "auth" / namespace).read_text().strip()

    def auth(self, namespace: str = "guest") -> tuple[str, str]:
        key_uuid, _, secret = self.key(namespace).partition(":")
        return key_uuid, secret

    def session(self, namespace: str = "guest") -> requests.Session:
        session = requests.Session()
        session.auth = self.auth(namespace)
        return session

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_stack(
    state_dir: Path, *flags: str, ready_timeout_s: float = 90.0, port: int | None = None
) -> Iterator[RunningStack]:
    """The stack with `flags` (e.g. "--stock", "--idle-timeout", "5"), namespaces guest and other."""
    port = port or free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"devstack-{port}.log"
    labels = [arg for key, value in TEST_LABELS.items() for arg in ("--label", f"{key}={value}")]
    command = [
        sys.executable, "-m", "warmwhisk_devstack", "--port", str(port), "--state-dir", str(state_dir),
        "--wskprops", str(state_dir / "wskprops"), "--image", IMAGE, "--models-dir", str(MODELS),
        "--namespace", OTHER_NAMESPACE, *labels, *flags,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMWHISK_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    stack = RunningStack(port, state_dir, process, log_path)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while "ready" not in stack.log():
            if process.poll() is not None:
                raise RuntimeError(f"the stack exited with {process.returncode}:\n{stack.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack was not ready within {ready_timeout_s:.0f} s:\n{stack.log()}")
            time.sleep(0.1)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
