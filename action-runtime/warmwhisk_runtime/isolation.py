"""Per-activation isolation inside one process: `__OW_*` environment and log lines.

Upstream runtimes serve one activation at a time, so they can put the activation context into
the process environment and let logs stream out. With overlapping activations (Node.js does
this) both break: `process.env` holds whichever activation wrote last, and log lines of
different activations interleave, so the invoker cannot attribute them.

Here every activation runs with its own `Activation` in a context variable:
- `os.environ` / `os.getenv` are served by `ActivationEnviron`, which answers `__OW_*` keys from
  the running activation, an action's init parameters from that action's own environment (host
  mode: several actions share the process; `current_action_env`), and everything else from the
  real process environment. No activation's `__OW_*` is ever written to the process environment,
  so a thread that action code starts (it begins with an empty context) sees none of them, and
  neither does `os.environb` nor a subprocess;
- `sys.stdout` / `sys.stderr` are `RoutedStream`s that collect an activation's writes in its own
  buffer; `LogSink.emit` writes the buffer followed by the sentinel as one block, so each
  activation's lines stay together and end with their own sentinels.
Writes made outside any activation (import-time prints in /init, background threads) go straight
to the real streams. Writes to file descriptors 1 and 2 (C extensions, subprocesses) bypass this.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

from .contract import ENV_PREFIX, SENTINEL


class ActivationLog:
    """Log text an activation wrote, per stream, capped at `limit` characters each.

    Once closed (written out), `append` refuses, so a thread that outlives its activation
    writes straight to the real streams instead of into a buffer nobody will read.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._sizes = {"stdout": 0, "stderr": 0}
        self._truncated: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()

    def append(self, stream: str, text: str) -> bool:
        with self._lock:
            if self._closed:
                return False
            used = self._sizes[stream]
            if used + len(text) > self.limit:
                text = text[: max(0, self.limit - used)]
                self._truncated.add(stream)
            self._sizes[stream] = used + len(text)
            self._parts[stream].append(text)
            return True

    def close(self) -> dict[str, str]:
        """Stop collecting; return each stream's text, ending in a newline when not empty."""
        with self._lock:
            self._closed = True
            texts = {}
            for stream, parts in self._parts.items():
                text = "".join(parts)
                if stream in self._truncated:
                    text += f"\n[warmwhisk] log truncated at {self.limit} characters\n"
                if text and not text.endswith("\n"):
                    text += "\n"
                texts[stream] = text
            return texts


@dataclass
class Activation:
    """One /run in flight: its `__OW_*` values and its log buffers."""

    env: dict[str, str]
    log: ActivationLog
    body: bytes = b""  # the /run request as received (routed mode forwards it unchanged)
    models: Any = None  # the models it holds (models.ActivationModels), for Model.get()


current_activation: ContextVar[Activation | None] = ContextVar("warmwhisk_activation", default=None)
# The init parameters of the action whose code runs now (host mode; None in direct mode, where
# they are the process environment).
current_action_env: ContextVar[dict[str, str] | None] = ContextVar("warmwhisk_action_env", default=None)


def quiet_activation(env: dict[str, str]) -> Activation:
    """An activation whose context is `env` but whose output goes straight to the real streams:
    the one that triggered /init, while the action's code loads (import-time output is not an
    activation's log)."""
    log = ActivationLog(limit=0)
    log.close()
    return Activation(env=env, log=log)


class ActivationEnviron(MutableMapping[str, str]):
    """A drop-in for `os.environ` whose `__OW_*` keys belong to the running activation.

    Inside an activation, `__OW_*` reads and writes go to that activation's own values; the
    `masked` names (activation context keys, and those /init set for the activation that
    triggered it) are hidden unless this activation has them. Every other key, and every key
    outside an activation, is the real process environment (`os._Environ`, which calls putenv).
    """

    def __init__(self, real: MutableMapping[str, str], masked: set[str]) -> None:
        self._real = real
        self.masked = masked

    def _activation_env(self, key: str) -> dict[str, str] | None:
        """Where `key` lives for the code running now: its activation's context (`__OW_*`), its
        action's init parameters (host mode), or None: the process environment."""
        if key.startswith(ENV_PREFIX):
            activation = current_activation.get()
            return None if activation is None else activation.env
        return current_action_env.get()

    def __getitem__(self, key: str) -> str:
        own = self._activation_env(key)
        if own is not None and key in own:
            return own[key]
        if key in self.masked:  # another activation's context: never the process's
            raise KeyError(key)
        return self._real[key]

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"str expected, not {type(key).__name__}/{type(value).__name__}")
        own = self._activation_env(key)
        if own is not None:
            own[key] = value
        else:
            self._real[key] = value

    def __delitem__(self, key: str) -> None:
        own = self._activation_env(key)
        if own is not None and key in own:
            del own[key]
        else:
            self._real.__delitem__(key)

    def __iter__(self) -> Iterator[str]:
        activation = current_activation.get()
        context = {} if activation is None else activation.env
        action = current_action_env.get() or {}
        for key in list(self._real):
            if key not in self.masked and key not in context and key not in action:
                yield key
        yield from list(action)
        yield from list(context)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def copy(self) -> dict[str, str]:
        return dict(self)

    def __or__(self, other: object) -> dict[str, str]:
        if not isinstance(other, dict):
            return NotImplemented
        return {**self, **other}

    def __repr__(self) -> str:
        return f"ActivationEnviron({dict(self)!r})"


class LogSink:
    """The real stdout/stderr, written under one lock so blocks never interleave.

    With `tag_sentinels`, each sentinel line carries the activation id it ends (when the id is a
    plain token), for a collector that separates concurrent activations (`config.log_activation_ids`).
    """

    def __init__(self, stdout: TextIO, stderr: TextIO, tag_sentinels: bool = False) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.tag_sentinels = tag_sentinels
        self._lock = threading.Lock()

    def write_direct(self, stream: str, text: str) -> None:
        real = self.stdout if stream == "stdout" else self.stderr
        with self._lock:
            real.write(text)
            real.flush()

    def emit(self, log: ActivationLog | None, activation_id: str = "") -> None:
        """Close an activation's log and write it, then one sentinel line per stream, flushed."""
        texts = {"stdout": "", "stderr": ""} if log is None else log.close()
        tagged = self.tag_sentinels and activation_id.isascii() and activation_id.isalnum()
        sentinel = f"{SENTINEL} {activation_id}" if tagged else SENTINEL
        with self._lock:
            for real, text in ((self.stdout, texts["stdout"]), (self.stderr, texts["stderr"])):
                real.write(text + sentinel + "\n")
                real.flush()


class RoutedStream(io.TextIOBase):
    """`sys.stdout`/`sys.stderr` replacement that routes writes to the running activation."""

    def __init__(self, sink: LogSink, name: str) -> None:
        super().__init__()
        self._sink = sink
        self._name = name
        self._real: TextIO = sink.stdout if name == "stdout" else sink.stderr

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        activation = current_activation.get()
        if activation is None or not activation.log.append(self._name, text):
            self._sink.write_direct(self._name, text)
        return len(text)

    def flush(self) -> None:
        if current_activation.get() is None:
            self._real.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._real.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._real.errors

    @property
    def buffer(self):
        return self._real.buffer


def install(sink: LogSink, environ: ActivationEnviron) -> None:
    """Put the routed streams and the activation-aware environment in place, process-wide."""
    import sys

    sys.stdout = RoutedStream(sink, "stdout")
    sys.stderr = RoutedStream(sink, "stderr")
    os.environ = environ  # type: ignore[assignment]  # noqa: B003 - os.getenv reads this global
