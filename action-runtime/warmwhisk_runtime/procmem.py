"""Memory of processes as the kernel accounts it, from /proc (Linux).

PSS (proportional set size) splits each shared page between the processes that map it, so the
PSS of N containers that map one model file adds up to about one copy of it, while RSS would
count it N times. Used by /healthz (this process) and by the memory benchmark and tests (host
PIDs of containers).
"""

from __future__ import annotations

from pathlib import Path


def pss_bytes(pid: int | str = "self") -> int:
    """PSS of one process in bytes (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def total_pss_bytes(pids: list[int]) -> int:
    return sum(pss_bytes(pid) for pid in pids)
