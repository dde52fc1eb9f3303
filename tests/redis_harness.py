"""A private ``redis-server`` process for tests: password-protected, loopback-only, no persistence.

Used by the tests, the benchmarks and the demo: it picks a free 127.0.0.1 port,
writes its config (with a random password) into a private temporary directory, waits until an
authenticated PING answers, and can be restarted on the same port, losing every key, as a Redis
without persistence does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis


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


@contextmanager
def running_redis() -> Iterator[RedisProcess]:
    """A started redis-server (``host``, ``port``, ``password``, ``url``, ``client()``, ``restart()``),
    stopped and its temporary directory removed afterwards."""
    with RedisProcess() as server:
        yield server
