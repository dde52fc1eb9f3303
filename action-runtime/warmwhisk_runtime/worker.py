"""The gunicorn worker class of the action port: one process, one event loop (uvloop).

gunicorn stays the process manager (the arbiter, its signals, the worker's heartbeat, and
`server.RuntimeServer`'s rule that a dead worker ends the runtime); this worker replaces the
thread pool that parsed requests with an event loop serving `protocol.HttpConnection`s, and runs
action code on the runtime's own activation threads (`runner.DeadlineRunner`). It is a subclass
of gunicorn's documented extension point, `gunicorn.workers.base.Worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import uvloop
from gunicorn.workers.base import Worker

from .protocol import ActionServer

# How often the worker tells the arbiter it is alive and enforces the connections' time-outs.
TICK_S = 1.0
# How often a graceful stop checks whether the answers still owed went out.
DRAIN_POLL_S = 0.02


class ActionWorker(Worker):
    """Serves the `protocol.ActionServer` that the application loads (`RuntimeServer.load`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._quick = False  # SIGINT/SIGQUIT: stop without waiting for answers owed

    def init_process(self) -> None:
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._stop = asyncio.Event()
        super().init_process()  # signals, the application (`load_wsgi`), then `run`

    def init_signals(self) -> None:
        assert self.loop is not None
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        self.loop.add_signal_handler(signal.SIGTERM, self._stopping, False)
        self.loop.add_signal_handler(signal.SIGINT, self._stopping, True)
        self.loop.add_signal_handler(signal.SIGQUIT, self._stopping, True)
        self.loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        self.loop.add_signal_handler(signal.SIGWINCH, lambda: None)
        self.loop.add_signal_handler(signal.SIGABRT, self.handle_abort, signal.SIGABRT, None)

    def _stopping(self, quick: bool) -> None:
        """SIGTERM: a graceful stop (answers owed go out, up to `graceful_timeout`); SIGINT and
        SIGQUIT: at once."""
        self.alive = False
        self._quick = self._quick or quick
        if quick:
            self.cfg.worker_int(self)
        assert self._stop is not None
        self._stop.set()

    def run(self) -> None:
        assert self.loop is not None
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        assert self.loop is not None and self._stop is not None
        server: ActionServer = self.wsgi
        server.handler.bind(self.loop)  # type: ignore[attr-defined]
        listeners = [
            await self.loop.create_server(server.protocol, sock=listener.sock, start_serving=True)
            for listener in self.sockets
        ]
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
            server.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK_S)
        for listener in listeners:
            listener.close()
        server.close_when_done()
        end = time.monotonic() + (0 if self._quick else self.cfg.graceful_timeout)
        while server.owing and time.monotonic() < end and not self._quick:
            self.notify()
            await asyncio.sleep(DRAIN_POLL_S)
