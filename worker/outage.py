"""Riding out a Redis outage inside a running job instead of dying with it.

A worker's writes (each iteration's event, the final status) and its reads (should the job
stop?) are retried with exponential backoff while Redis is unreachable, for at most a budget
(``PENG4NN_WORKER_REDIS_RETRY_S``) per outage. Training goes on meanwhile only between
iterations: the job waits at its next write. If the outage outlasts the job's lease, the API's
maintenance pass has re-queued or failed the job by the time Redis answers again; the job's
next compare-and-set write is then refused and it stops (`peng4nn_worker.tasks`), so nothing is
written twice and the lease rule decides the outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("peng4nn.worker")

T = TypeVar("T")

OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError)
"""What counts as "Redis unreachable" (wrong password and pool exhaustion are ConnectionErrors too)."""

FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0


class RedisRetry:
    """Call a function, retrying it through Redis connection errors for at most ``budget_s`` seconds.

    Stops retrying at once when ``stop`` is set (the worker is shutting down).
    """

    def __init__(self, budget_s: float, stop: threading.Event | None = None, sleep=time.sleep,
                 clock=time.monotonic):
        self.budget_s, self.stop, self.sleep, self.clock = budget_s, stop, sleep, clock
        self.outages = 0

    def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        deadline = None
        wait = FIRST_WAIT_S
        while True:
            try:
                return fn(*args, **kwargs)
            except OUTAGE_ERRORS as exc:
                now = self.clock()
                if deadline is None:
                    deadline = now + self.budget_s
                    self.outages += 1
                    log.warning("Redis unreachable (%s); retrying for up to %.0f s", exc, self.budget_s)
                if now >= deadline or (self.stop is not None and self.stop.is_set()):
                    raise
                self.sleep(min(wait, deadline - now))
                wait = min(wait * 2, MAX_WAIT_S)


def wait_for_redis(ping: Callable[[], object], stop: threading.Event, sleep=time.sleep) -> bool:
    """Ping until Redis answers (True) or ``stop`` is set (False), backing off up to `MAX_WAIT_S`."""
    wait = FIRST_WAIT_S
    while not stop.is_set():
        try:
            ping()
            return True
        except OUTAGE_ERRORS:
            sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)
    return False
