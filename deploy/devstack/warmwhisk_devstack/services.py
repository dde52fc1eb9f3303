"""Local services the stack starts and stops: a private Redis and the scaler, as processes.

`RedisProcess`: a password-protected, loopback-only redis-server without persistence on a free
port, its config (with a random password) in a private temporary folder; it waits until an
authenticated PING answers and can be restarted on the same port, losing every key. The tests and
the benchmarks start theirs with it too (`tests/redis_harness.py`).

`ScalerProcess`: the `warmwhisk-scaler` console script with the Docker backend, its Redis URL and
token in 0600 files (nothing in `ps`), stopped with SIGTERM; `remove_hosts` removes the model
hosts it started (the scaler leaves them running for a successor to adopt).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import requests


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    """``with RedisProcess() as server: redis.Redis.from_url(server.url)``.

    ``auth=False`` starts it without a password (anyone on loopback may send commands), the Redis
    the scaler refuses; ``password`` is then None and ``url`` has no credentials.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        executable: str | None = None,
        start_timeout_s: float = 10.0,
        auth: bool = True,
    ) -> None:
        found = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(found).exists():
            raise FileNotFoundError("redis-server not found; install it (apt-get install -y redis-server)")
        self.executable = found
        self._fixed_port = port is not None
        self.port = port or free_loopback_port()
        self.password = (password or secrets.token_hex(16)) if auth else None
        self.start_timeout_s = start_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="warmwhisk-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password is not None else ""
        return f"redis://{credentials}{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)  # type: ignore[arg-type]

    def start(self) -> RedisProcess:
        """Start and wait until it answers; a port taken meanwhile is replaced (unless fixed)."""
        for attempt in range(3):
            try:
                self._start_once()
                return self
            except RuntimeError:
                self.stop()
                if self._fixed_port or attempt == 2:
                    raise
                self.port = free_loopback_port()
        return self

    def _start_once(self) -> None:
        config = self._dir / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {self.host}",
                    "protected-mode yes",
                    *([f"requirepass {self.password}"] if self.password is not None else []),
                    'save ""',
                    "appendonly no",
                    f"dir {self._dir}",
                    f"logfile {self.log_path}",
                    "daemonize no",
                    "databases 1",
                ]
            )
            + "\n"
        )
        os.chmod(config, 0o600)
        self._proc = subprocess.Popen(
            [self.executable, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = self.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self._proc.returncode}: {self._log_tail()}"
                    )
                with contextlib.suppress(redis.ConnectionError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer within {self.start_timeout_s}s")
                time.sleep(0.01)
        finally:
            probe.close()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s) and wait; keys are lost (no persistence)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same password: an empty Redis."""
        self.stop()
        self._fixed_port = True
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ScalerProcess:
    """The scaler for one stack: Docker backend, key prefix `prefix`, models from `model_dir`."""

    def __init__(
        self,
        redis_url: str,
        state_dir: Path,
        *,
        image: str,
        model_dir: Path,
        prefix: str,
        host_memory_mb: int = 2048,
        port: int | None = None,
    ) -> None:
        self.port = port or free_loopback_port()
        self.prefix = prefix
        self.token = secrets.token_urlsafe(32)
        self._state_dir = state_dir
        self._command_args = [
            "--backend", "docker", "--image", image, "--model-dir", str(model_dir), "--prefix", prefix,
            "--port", str(self.port), "--tick", "0.5", "--heartbeat", "0.5",
            "--host-secrets-dir", str(state_dir / "host-secrets"),
            "--host-memory", str(host_memory_mb * 1024 * 1024),
        ]  # fmt: skip
        self._redis_url = redis_url
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def owner_label(self) -> str:
        """The label of the model hosts it starts (the Docker backend's owner: scaler + prefix)."""
        return f"warmwhisk.owner=warmwhisk-scaler.{self.prefix}"

    def start(self, timeout_s: float = 30.0) -> ScalerProcess:
        secret_dir = self._state_dir / "scaler"
        secret_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        url_file, token_file = secret_dir / "redis-url", secret_dir / "token"
        for path, value in ((url_file, self._redis_url), (token_file, self.token)):
            path.write_text(value + "\n")
            path.chmod(0o600)
        command = [sys.executable, "-m", "warmwhisk_scaler", "--redis-url-file", str(url_file),
                   "--token-file", str(token_file), *self._command_args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARMWHISK_")}
        self._proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the scaler exited with {self._proc.returncode} at start")
            with contextlib.suppress(requests.RequestException, ValueError):
                if requests.get(self.url + "/healthz", timeout=1).json().get("redis"):
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the scaler did not answer within {timeout_s:.0f} s")
            time.sleep(0.1)

    def credential(self, namespace: str) -> str:
        """The namespace's registry credential (created on first use) for its ML actions' /init."""
        response = requests.post(
            f"{self.url}/namespaces/{namespace}/credential",
            json={}, headers={"Authorization": f"Bearer {self.token}"}, timeout=10,
        )  # fmt: skip
        response.raise_for_status()
        return str(response.json()["credential"])

    def status(self) -> dict[str, Any]:
        response = requests.get(
            self.url + "/status", headers={"Authorization": f"Bearer {self.token}"}, timeout=5
        )
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
