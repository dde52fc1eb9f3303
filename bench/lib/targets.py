"""Starting and stopping what the benchmarks measure: local runtime (and floor) processes, runtime
containers, Redis; their HTTP surface (/init, /run, /healthz) and their memory (PSS).

Local processes get SIGTERM when the benchmark dies without cleaning up; containers carry the labels
`warmwhisk.bench=1` and `warmwhisk.bench.run=<run id>`, and each benchmark removes its run's."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lib.actions import ActionCode, init_body
from lib.load import cpu_seconds, http_json, tree_pids
from warmwhisk_protocol.host import IMAGE_PYTHON, runtime_command
from warmwhisk_runtime.procmem import total_pss_bytes

REPO = Path(__file__).resolve().parent.parent.parent
IMAGE = os.environ.get("WARMWHISK_IMAGE", "warmwhisk/runtime:dev")
BENCH_LABEL = "warmwhisk.bench"
RUN_LABEL = "warmwhisk.bench.run"


# ------------------------------------------------------------------------------------ processes
def free_port() -> int:
    """A free TCP port on 127.0.0.1 (servers under test bind loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_on_sigterm() -> None:
    """SIGTERM ends the benchmark like Ctrl-C does: through its clean-up."""

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark dies without cleaning up (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the runtime's own variables, as in the runtime image, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("__OW_", "WARMWHISK_"))}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


class Target:
    """The HTTP surface of a runtime: a container or a local process."""

    port: int
    metrics_port: int

    def alive(self) -> bool:
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    def wait_port(self, timeout_s: float = 120.0, poll_s: float = 0.005) -> None:
        """Until the action port accepts a connection (every `poll_s`; is it alive? every 0.5 s)."""
        end = time.monotonic() + timeout_s
        checked = time.monotonic()
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if not self.alive():
                    raise RuntimeError(f"runtime exited during start-up:\n{self.logs()[-3000:]}")
            time.sleep(poll_s)
        raise RuntimeError(f"the action port {self.port} did not open within {timeout_s}s")

    def health(self) -> dict[str, Any] | None:
        try:
            status, body = http_json(self.metrics_port, "GET", "/healthz", timeout=5)
        except OSError:
            return None
        return body if status == 200 else None

    def wait_health(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 180.0) -> dict:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            health = self.health()
            if health is not None and predicate(health):
                return health
            if health is None and not self.alive():
                raise RuntimeError(f"runtime exited:\n{self.logs()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"timed out after {timeout_s}s waiting on /healthz; logs:\n{self.logs()[-3000:]}")

    def init(self, action: ActionCode, env: dict[str, str] | None = None, timeout: float = 600.0,
             name: str = "bench") -> None:  # fmt: skip
        status, answer = http_json(self.port, "POST", "/init", init_body(action, env, name), timeout=timeout)
        if status != 200:
            raise RuntimeError(f"/init answered {status} {answer}; logs:\n{self.logs()[-3000:]}")

    def run(self, value: dict[str, Any], timeout: float = 600.0) -> Any:
        status, answer = http_json(self.port, "POST", "/run", {"value": value}, timeout=timeout)
        if status != 200 or (isinstance(answer, dict) and "error" in answer):
            raise RuntimeError(f"/run answered {status} {answer}; logs:\n{self.logs()[-3000:]}")
        return answer


class LocalProcess(Target):
    """A server under test as a child process of the benchmark (it dies with it): stdout and stderr
    in `logdir/<name>.stdout.log` and `.stderr.log`, `logdir` its working directory."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, logdir: Path,
                 metrics_port: int = 0) -> None:  # fmt: skip
        self.name, self.port, self.metrics_port = name, port, metrics_port
        logdir.mkdir(parents=True, exist_ok=True)
        self.out_path = logdir / f"{name}.stdout.log"
        self.err_path = logdir / f"{name}.stderr.log"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=logdir,
                preexec_fn=_die_with_parent,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        """stdout (the actions' output), then stderr (the server's log, tracebacks: a tail shows it)."""
        return "".join(p.read_text(errors="replace") for p in (self.out_path, self.err_path) if p.exists())

    def tail(self) -> str:
        return self.err_path.read_text(errors="replace")[-2000:] if self.err_path.exists() else ""

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the process and its descendants (gunicorn arbiter and worker); None
        once it has exited."""
        return cpu_seconds(tree_pids(self.process.pid)) if self.alive() else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful stop
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_runtime(
    name: str, logdir: Path, env: dict[str, str], ready_timeout_s: float = 30.0
) -> LocalProcess:
    """`python -m warmwhisk_runtime` on two free loopback ports, its mode from `env`; returns once
    its action port accepts connections (stopped if it does not)."""
    port, metrics_port = free_port(), free_port()
    argv = runtime_command(sys.executable, port, metrics_port)
    server = LocalProcess(name, argv, child_env(env), port, logdir, metrics_port)
    with stopped_on_error(server):
        server.wait_port(ready_timeout_s)
    return server


@contextlib.contextmanager
def stopped_on_error(server: LocalProcess) -> Iterator[None]:
    """Stop a server that is not yet handed to its caller when its start-up fails."""
    try:
        yield
    except BaseException:
        server.stop()
        raise


def pid_with_port_flag(port: int) -> int | None:
    """The process whose command line says `--port <port>` (a runtime a scaler backend started)."""
    needle = f"--port\0{port}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


# ----------------------------------------------------------------------------------- containers
class RuntimeContainer(Target):
    """A container of the runtime image on the host network, its runtime on two free ports."""

    def __init__(self, client: Any, labels: dict[str, str], env: dict[str, str], volumes: dict) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.container = client.containers.run(
            IMAGE,
            command=runtime_command(IMAGE_PYTHON, self.port, self.metrics_port),
            environment=env,
            network_mode="host",
            volumes=volumes,
            detach=True,
            labels=labels,
        )

    def alive(self) -> bool:
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - gone
            return False
        return self.container.status in ("created", "running")

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            return self.container.logs().decode(errors="replace")
        return ""

    def pids(self) -> list[int]:
        """Host PIDs of every process of the container (`docker top`)."""
        return [int(row[0]) for row in self.container.top(ps_args="-o pid")["Processes"]]

    def pss(self) -> int:
        return total_pss_bytes(self.pids())

    def mapped_bytes(self, name: str) -> int:
        """Resident bytes of this container's mappings of files whose path ends with `name`."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                inside = False
                for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                    fields = line.split()
                    if fields and "-" in fields[0] and not fields[0].endswith(":"):
                        inside = len(fields) >= 6 and fields[-1].endswith(name)
                    elif inside and fields[0] == "Rss:":
                        total += int(fields[1]) * 1024
        return total

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


class DockerEngine:
    """The Docker engine (connected on first use), and every container this run started."""

    def __init__(self, run_id: str, timeout_s: int = 600) -> None:
        self.run_id = run_id
        self.labels = {BENCH_LABEL: "1", RUN_LABEL: run_id}
        self._timeout_s = timeout_s
        self._client: Any = None
        self.containers: list[RuntimeContainer] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=self._timeout_s)
        return self._client

    @property
    def connected(self) -> bool:
        return self._client is not None

    def check_image(self) -> None:
        """Fail early when the engine does not answer or the image is missing."""
        import docker

        self.client.ping()
        try:
            self.client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            raise SystemExit(f"image {IMAGE} is missing; run `make image`") from None

    def run(self, env: dict[str, str] | None = None, volumes: dict | None = None) -> RuntimeContainer:
        container = RuntimeContainer(self.client, self.labels, env or {}, volumes or {})
        self.containers.append(container)
        return container

    def discard(self, container: RuntimeContainer) -> None:
        container.remove()
        with contextlib.suppress(ValueError):
            self.containers.remove(container)

    def remove_all(self) -> int:
        """Remove this run's containers: those started here, then any other with the run's label."""
        for container in self.containers:
            container.remove()
        self.containers.clear()
        return self.remove_labelled(f"{RUN_LABEL}={self.run_id}")

    def remove_labelled(self, label: str) -> int:
        """Remove every container (running or not) with this label; how many there were."""
        found: list[Any] = []
        with contextlib.suppress(Exception):
            found = self.client.containers.list(all=True, filters={"label": label})

        def remove(container: Any) -> None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, found))
        return len(found)

    def owner_pss(self, owner: str, pool: ThreadPoolExecutor) -> tuple[int, int]:
        """(total PSS of every process of this scaler owner's running containers, container count)."""
        return self.labelled_pss(f"warmwhisk.owner={owner}", pool)

    def labelled_pss(self, label: str, pool: ThreadPoolExecutor) -> tuple[int, int]:
        """(total PSS of every process of the running containers with `label`, container count);
        processes are found with `docker top`, their PSS read from /proc (shared pages split)."""
        summaries = self.client.api.containers(filters={"label": [label], "status": "running"})

        def one(summary: dict[str, Any]) -> int:
            try:
                rows = self.client.api.top(summary["Id"], ps_args="-o pid")["Processes"] or []
            except Exception:  # noqa: BLE001 - stopped meanwhile
                return 0
            return total_pss_bytes([int(row[0]) for row in rows])

        return sum(pool.map(one, summaries)), len(summaries)


# ----------------------------------------------------------------------------------------- Redis
def redis_server() -> Any:
    """A started, password-protected redis-server on a free loopback port (the dev stack's
    launcher, also the tests'); `close()` stops it."""
    from warmwhisk_devstack.services import RedisProcess

    return RedisProcess().start()
