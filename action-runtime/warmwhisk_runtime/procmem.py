"""Memory of processes as the kernel accounts it, from /proc (Linux).

Also the release of a process's freed C heap while it is idle (IdleHeapTrimmer).

PSS (proportional set size) splits each shared page between the processes that map it, so the
PSS of N containers that map one model file adds up to about one copy of it, while RSS would
count it N times. Used by /healthz (this process) and by the memory benchmark and tests (host
PIDs of containers).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from pathlib import Path


class PssUnavailable(OSError):
    """The kernel would not tell a process's PSS (the process is gone, no permission, no
    smaps_rollup): a measurement that did not happen, never a zero."""


def pss_bytes(pid: int | str = "self") -> int:
    """PSS of one process in bytes; raises `PssUnavailable` when it cannot be read."""
    path = Path(f"/proc/{pid}/smaps_rollup")
    try:
        text = path.read_text()
    except OSError as exc:
        raise PssUnavailable(f"cannot read {path}: {exc}") from exc
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise PssUnavailable(f"{path} has no Pss line")


def own_pss_bytes() -> int | None:
    """This process's PSS, or None where the kernel does not report it (for /healthz)."""
    try:
        return pss_bytes()
    except PssUnavailable:
        return None


def total_pss_bytes(pids: list[int]) -> int:
    return sum(pss_bytes(pid) for pid in pids)


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, other systems)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class IdleHeapTrimmer:
    """Counts the activations running and, once none has run for `idle_for_s`, gives the C
    heap's free pages back to the kernel (glibc `malloc_trim`), at most once per
    `min_interval_s`.

    Why: a forward pass allocates tens of MB of temporary tensors from threads' malloc arenas;
    glibc keeps them after they are freed (measured: about 6 MB per container after one
    bert-base forward), and an idle OpenWhisk container, paused or not, then holds that memory
    until it is removed. `idle_for_s` (20 ms) is shorter than the invoker's pause grace (50 ms),
    so the trim happens before a pause, and longer than the gap between back-to-back
    activations, so a busy container does not give back memory it is about to fault in again.
    Trimming runs on a background thread; no activation waits for it."""

    def __init__(self, idle_for_s: float = 0.02, min_interval_s: float = 1.0) -> None:
        self._trim = _glibc_malloc_trim()
        self._idle_for_s = idle_for_s
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._running = 0
        self._begun = 0  # activations begun so far: tells whether one came and went meanwhile
        self._went_idle = threading.Event()
        self.trims = 0
        if self._trim is not None:
            threading.Thread(target=self._loop, name="heap-trim", daemon=True).start()

    @property
    def running(self) -> int:
        """Activations begun and not yet ended."""
        return self._running

    def begin(self) -> None:
        with self._lock:
            self._running += 1
            self._begun += 1

    def end(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._went_idle.set()

    def _still_idle_since(self, begun: int) -> bool:
        with self._lock:
            return self._running == 0 and self._begun == begun

    def _loop(self) -> None:
        assert self._trim is not None
        while True:
            self._went_idle.wait()
            self._went_idle.clear()
            with self._lock:
                begun = self._begun
            time.sleep(self._idle_for_s)
            if not self._still_idle_since(begun):
                continue  # busy again: the next idle moment sets the event anew
            self._trim(0)
            self.trims += 1
            time.sleep(self._min_interval_s)
