"""Model hosts as local processes, for a machine without a Docker engine (development, CI).

Each host is ``<python> -m warmwhisk_runtime --host 127.0.0.1 --port P --metrics-port M`` in its
own session (so its process group, the runtime's gunicorn master and worker, is signalled as one),
with stdout/stderr in ``<state_dir>/<host_id>.out`` / ``.err`` and a JSON record
``<state_dir>/<host_id>.json`` (pid, ports, pool, owner, start time, and the kernel's start time
of the pid). A new ``ProcessBackend`` over the same ``state_dir`` (a restarted scaler) reads the
records back: a record is live only if its pid exists, is not a zombie, has the recorded kernel
start time (the pid was not reused) and runs ``warmwhisk_runtime``; any other record is stale.
The ownership check reads ``/proc``; without ``/proc`` (macOS) only "the pid exists" is checked.

What a process cannot do that a container does:
- ``HostSpec.memory_bytes`` and ``HostSpec.cpus`` are *not enforced*. (RLIMIT_AS was rejected:
  it caps virtual address space, which torch's thread arenas and memory-mapped weights exceed
  long before resident memory does, so the host would fail at random allocations.)
- ``HostSpec.model_dir`` is ignored: nothing is mounted at ``/models``, so a process host sees the
  machine's filesystem as it is (point actions at real paths, or run a Docker backend).
- Hosts are not isolated from each other or from the scaler (same user, same filesystem).

Stopping kills the whole process group: SIGTERM, up to ``stop_timeout_s``, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from warmwhisk_protocol.host import PROC_NAME, RUNTIME_MODULE, Env, runtime_command

from .base import (
    DEFAULT_OWNER,
    HOST_ID_PATTERN,
    BackendError,
    HostSpec,
    PortAllocator,
    RunningHost,
    adopt_or_stop,
    loopback,
    poll_ready,
)

# Markers of our process in /proc/<pid>/cmdline (the module, or gunicorn's proc_name).
_CMDLINE_MARKERS = (RUNTIME_MODULE.encode(), PROC_NAME.encode())


@dataclass(frozen=True)
class _Record:
    """The JSON record of one host, ``<state_dir>/<host_id>.json``."""

    host_id: str
    pool: str
    owner: str
    pid: int
    port: int
    metrics_port: int
    started_at: float
    proc_start: int | None  # field 22 of /proc/<pid>/stat (clock ticks since boot); None without /proc

    def host(self) -> RunningHost:
        return RunningHost(
            host_id=self.host_id,
            pool=self.pool,
            address=loopback(self.port),
            metrics_address=loopback(self.metrics_port),
            started_at=self.started_at,
            owner=self.owner,
        )


def default_environ() -> dict[str, str]:
    """The scaler's environment minus OpenWhisk and warmwhisk settings (they are the scaler's own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("__OW_", "WARMWHISK_"))}


class ProcessBackend:
    """``HostBackend`` over local processes.

    ``state_dir``: records and logs (created if missing). ``python``: interpreter with the runtime
    installed (default: the scaler's own, where `make setup` installs both). ``pythonpath``: a
    folder to put first on the hosts' PYTHONPATH (default none).
    ``owner``: only records of this owner are listed, adopted or removed. ``base_env``: environment
    the hosts start from (default: ``default_environ()``, read at each ``start``).
    ``stop_timeout_s``: grace between SIGTERM and SIGKILL.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        python: str = sys.executable,
        pythonpath: str | os.PathLike[str] | None = None,
        owner: str = DEFAULT_OWNER,
        base_env: Mapping[str, str] | None = None,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.pythonpath = str(pythonpath) if pythonpath is not None else None
        self.owner = owner
        self.base_env = dict(base_env) if base_env is not None else None
        self.stop_timeout_s = stop_timeout_s
        self._ports = PortAllocator()
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # started here: reaped here
        self._lock = threading.Lock()

    # -- HostBackend -------------------------------------------------------------------------------
    def start(self, spec: HostSpec) -> RunningHost:
        with self._lock:
            existing = self._read(spec.host_id)
            if existing is not None and _is_ours(existing):
                raise BackendError(f"starting model host {spec.host_id!r}: a host with this id is running")
            port, metrics_port = self._ports.allocate(2)
            env = dict(self.base_env if self.base_env is not None else default_environ())
            if self.pythonpath:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.pythonpath, env.get("PYTHONPATH")]))
            env["PYTHONUNBUFFERED"] = "1"
            env.update(spec.env)
            if spec.secrets is not None:  # the host reads and removes it at start
                secrets_path = self._path(spec.host_id, ".secrets")
                secrets_path.unlink(missing_ok=True)
                spec.secrets.write(secrets_path)
                env[Env.SECRETS_FILE] = str(secrets_path)
            command = runtime_command(self.python, port, metrics_port)
            started_at = time.time()
            try:
                with (
                    open(self._path(spec.host_id, ".out"), "wb") as out,
                    open(self._path(spec.host_id, ".err"), "wb") as err,
                ):
                    child = subprocess.Popen(
                        command,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        cwd=self.state_dir,
                        start_new_session=True,  # own process group: stop() signals the group
                        close_fds=True,
                    )
            except OSError as exc:
                raise BackendError(f"starting model host {spec.host_id!r} ({command[0]}): {exc}") from exc
            record = _Record(
                host_id=spec.host_id,
                pool=spec.pool,
                owner=self.owner,
                pid=child.pid,
                port=port,
                metrics_port=metrics_port,
                started_at=started_at,
                proc_start=_proc_start(child.pid),
            )
            try:
                self._write(record)
            except OSError as exc:
                _kill_group(child.pid, signal.SIGKILL)
                child.wait()
                raise BackendError(
                    f"starting model host {spec.host_id!r}: cannot write its record: {exc}"
                ) from exc
            self._children[spec.host_id] = child
            return record.host()

    def stop(self, host_id: str) -> None:
        if not HOST_ID_PATTERN.fullmatch(host_id):
            return  # no such host can exist (and it must not name a path)
        record = self._read(host_id)
        if record is not None and record.owner != self.owner:
            return  # another owner's host: not ours to stop
        with self._lock:
            child = self._children.pop(host_id, None)
        if record is not None and _is_ours(record):
            self._terminate(record, child)
        elif child is not None and child.poll() is None:  # no record, but our child runs
            _kill_group(child.pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._forget(host_id)

    def running(self) -> list[RunningHost]:
        return [record.host() for record in self._scan()[0]]

    def reconcile(self, keep: Callable[[RunningHost], bool]) -> tuple[list[RunningHost], list[str]]:
        live, dead = self._scan()
        removed: list[str] = []
        for host_id in dead:
            with self._lock:
                child = self._children.pop(host_id, None)
            if child is not None:
                child.poll()  # reap it if it was ours
            self._forget(host_id)
            removed.append(host_id)
        adopted, stopped = adopt_or_stop([record.host() for record in live], keep, self.stop)
        return adopted, removed + stopped

    def wait_ready(self, host: RunningHost, timeout_s: float) -> bool:
        record = self._read(host.host_id)
        if record is None:
            return False
        return poll_ready(host, timeout_s, alive=lambda: _is_ours(record))

    def logs(self, host_id: str, tail: int = 100) -> str:
        if not HOST_ID_PATTERN.fullmatch(host_id):
            return ""
        parts = []
        for suffix in (".out", ".err"):
            with contextlib.suppress(OSError):
                lines = self._path(host_id, suffix).read_text(errors="replace").splitlines(keepends=True)
                parts.append("".join(lines[-tail:] if tail > 0 else []))
        return "".join(parts)

    # -- internals ---------------------------------------------------------------------------------
    def _path(self, host_id: str, suffix: str) -> Path:
        return self.state_dir / f"{host_id}{suffix}"

    def _read(self, host_id: str) -> _Record | None:
        try:
            data = json.loads(self._path(host_id, ".json").read_text())
            return _Record(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, record: _Record) -> None:
        path = self._path(record.host_id, ".json")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)  # atomic: a reader sees the old record or the new one

    def _forget(self, host_id: str) -> None:
        for suffix in (".json", ".out", ".err", ".secrets"):
            with contextlib.suppress(FileNotFoundError):
                self._path(host_id, suffix).unlink()

    def _scan(self) -> tuple[list[_Record], list[str]]:
        """(live records of this owner, ids of stale records: dead, reused pid, or unreadable)."""
        live: list[_Record] = []
        dead: list[str] = []
        for path in sorted(self.state_dir.glob("*.json")):
            host_id = path.name.removesuffix(".json")
            record = self._read(host_id)
            if record is None:
                dead.append(host_id)  # unreadable (records are written atomically: not expected)
            elif record.owner != self.owner:
                continue
            elif _is_ours(record):
                live.append(record)
            else:
                dead.append(host_id)
        live.sort(key=lambda r: (r.started_at, r.host_id))
        return live, dead

    def _terminate(self, record: _Record, child: subprocess.Popen[bytes] | None) -> None:
        """SIGTERM to the group, up to ``stop_timeout_s`` for the leader to exit, then SIGKILL."""

        def gone() -> bool:
            if child is not None:
                child.poll()  # reaps it: a zombie would otherwise count as alive for os.kill
            else:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(record.pid, os.WNOHANG)  # ours if a backend in this process started it
            return not _is_ours(record)

        _kill_group(record.pid, signal.SIGTERM)
        if not _wait(gone, self.stop_timeout_s):
            _kill_group(record.pid, signal.SIGKILL)
            if not _wait(gone, 5.0):
                raise BackendError(
                    f"stopping model host {record.host_id!r}: pid {record.pid} survives SIGKILL"
                )
        _kill_group(record.pid, signal.SIGKILL)  # stragglers of the group (a worker whose master died)


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise BackendError(f"signalling process group {pgid}: {exc}") from exc


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat; None if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    try:
        return fields[0].decode(), int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _is_ours(record: _Record) -> bool:
    """Whether the record's pid is alive and is the runtime process the record was written for."""
    if not Path("/proc/self/stat").exists():  # no /proc: the pid exists, that is all we can tell
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(record.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if record.proc_start is not None and stat[1] != record.proc_start:
        return False  # the pid was reused by another process
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(marker in cmdline for marker in _CMDLINE_MARKERS)
