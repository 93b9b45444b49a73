"""`peng4nn serve`'s watch over its own processes: local workers restarted, embedded Redis guarded.

A worker that exits while the service runs is started again (under a new name: RQ refuses a
name whose previous holder never registered its death), after a pause that doubles with each
restart. More than `MAX_RESTARTS` restarts of one worker within `RESTART_WINDOW_S` is a crash
loop: the supervisor gives up and reports it as fatal. So is the embedded Redis dying: its data
is gone and nothing can recover it, so `serve` stops and exits non-zero rather than serving
errors. The fatal callback runs on the supervisor's thread; `serve` turns it into a shutdown.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable

log = logging.getLogger("peng4nn.serve")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
FIRST_PAUSE_S = 0.5
POLL_S = 0.2
STOP_GRACE_S = 20.0
"""How long stopping workers may take to reach an iteration boundary before they are killed."""


class Supervisor:
    """Start ``count`` workers with ``start_worker(index, generation)`` and keep them running."""

    def __init__(self, start_worker: Callable[[int, int], subprocess.Popen], count: int,
                 redis_exit_code: Callable[[], int | None] | None, on_fatal: Callable[[str], None],
                 max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S,
                 first_pause_s: float = FIRST_PAUSE_S):
        self.start_worker, self.count = start_worker, count
        self.redis_exit_code, self.on_fatal = redis_exit_code, on_fatal
        self.max_restarts, self.window_s, self.first_pause_s = max_restarts, window_s, first_pause_s
        self.workers: list[subprocess.Popen] = []
        self.restarts: list[list[float]] = [[] for _ in range(count)]
        self.fatal: str | None = None
        self._generation = [0] * count
        self._restart_at: list[float | None] = [None] * count
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Supervisor":
        self.workers = [self.start_worker(i, 0) for i in range(self.count)]
        self._thread = threading.Thread(target=self._watch, name="serve-supervisor", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            message = self._check()
            if message is not None:
                self.fatal = message
                log.error("%s", message)
                self.on_fatal(message)
                return

    def _check(self) -> str | None:
        if self.redis_exit_code is not None and (code := self.redis_exit_code()) is not None:
            return f"the embedded Redis exited (code {code}); its data is gone, so the service stops"
        now = time.monotonic()
        for i, proc in enumerate(self.workers):
            if proc.poll() is None or self._stopping.is_set():
                continue
            if self._restart_at[i] is None:
                recent = [t for t in self.restarts[i] if now - t < self.window_s]
                if len(recent) >= self.max_restarts:
                    return (f"worker {i} exited {len(recent) + 1} times within {self.window_s:.0f} s "
                            f"(last exit code {proc.returncode}); giving up")
                pause = self.first_pause_s * 2 ** len(recent)
                log.warning("worker %d exited with code %s; restarting in %.1f s", i, proc.returncode, pause)
                self._restart_at[i] = now + pause
            elif now >= self._restart_at[i]:
                self.restarts[i].append(now)
                self._generation[i] += 1
                self._restart_at[i] = None
                self.workers[i] = self.start_worker(i, self._generation[i])
        return None

    def stop(self) -> None:
        """Stop watching, then ask each worker to stop (warm shutdown) and kill those that do not in time."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # warm shutdown: stop at the next iteration, re-queue
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.workers:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
