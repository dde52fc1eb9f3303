"""The dev stack for tests, started as a user starts it (`python -m warmwhisk_devstack`, through
`warmwhisk_devstack.client.StackProcess`) on a free port with its own state folder, the image and
models `make test` built, namespaces guest and other, every container it starts labelled as a
test's; stopped with SIGTERM (it then removes its containers, the scaler's model hosts, Redis and
the scaler)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from runtime_harness import IMAGE, TEST_LABELS, free_port
from warmwhisk_devstack.client import StackProcess

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "build" / "models"
OTHER_NAMESPACE = "other"


@dataclass
class RunningStack:
    stack: StackProcess

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir

    @property
    def process(self):
        return self.stack.process

    @property
    def api_host(self) -> str:
        return self.stack.api_host

    @property
    def base(self) -> str:
        return f"{self.api_host}/api/v1"

    def key(self, namespace: str = "guest") -> str:
        return self.stack.key(namespace)

    def auth(self, namespace: str = "guest") -> tuple[str, str]:
        key_uuid, _, secret = self.key(namespace).partition(":")
        return key_uuid, secret

    def session(self, namespace: str = "guest") -> requests.Session:
        session = requests.Session()
        session.auth = self.auth(namespace)
        return session

    def log(self) -> str:
        return self.stack.log()


@contextlib.contextmanager
def running_stack(
    state_dir: Path, *flags: str, ready_timeout_s: float = 90.0, port: int | None = None
) -> Iterator[RunningStack]:
    """The stack with `flags` (e.g. "--stock", "--idle-timeout", "5")."""
    all_flags = ["--image", IMAGE, "--models-dir", str(MODELS), "--namespace", OTHER_NAMESPACE, *flags]
    stack = StackProcess(port or free_port(), state_dir, all_flags, cwd=REPO, labels=TEST_LABELS)
    try:
        stack.start(ready_timeout_s)
        yield RunningStack(stack)
    finally:
        stack.stop()
