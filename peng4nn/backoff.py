"""When a client tries again: exponential backoff with jitter, bounded by a deadline, honouring the server's hints.

One rule for every retry of the SDK (a request that found the service down, a dropped event
stream), so a restarting API sees its clients come back spread out rather than in lock-step, and
a client gives up after a time it chose rather than after a count of tries.

* ``Retry-After`` (a 429 or 503 answer) is a floor: the client waits at least that long.
* An event stream's ``retry:`` field is the server's reconnection time: it replaces the initial
  delay, and consecutive failures grow from there.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "Attempts", "parse_retry_after"]

#: A last wait shorter than this before the deadline is not worth a try.
MIN_LAST_WAIT_S = 0.01

#: Retry-After hints above this are treated as this (a misconfigured proxy must not park a client for hours).
MAX_HINT_S = 300.0


@dataclass(frozen=True)
class Backoff:
    """How long to wait between tries: ``initial_s * factor**n``, capped at ``max_s``, with full jitter.

    ``deadline_s`` bounds the time from the first failure to the last try (None: no bound). The
    default (60 s) outlasts the API container's 20 s start-up health check with room to spare.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0
    deadline_s: float | None = 60.0

    def __post_init__(self) -> None:
        for name in ("initial_s", "factor", "max_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Backoff.{name} must be positive but got {value!r}")
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be at least 1 but got {self.factor!r}")
        if self.deadline_s is not None and self.deadline_s < 0:
            raise ValueError(f"Backoff.deadline_s cannot be negative but got {self.deadline_s!r}")

    def attempts(self) -> "Attempts":
        return Attempts(self)


@dataclass
class Attempts:
    """The retries of one operation: ask `next_delay()` after each failure; `reset()` after a success."""

    backoff: Backoff
    failures: int = 0
    first_failure: float | None = None
    rng: random.Random = field(default_factory=random.Random)

    def reset(self) -> None:
        self.failures, self.first_failure = 0, None

    def next_delay(self, *, retry_after: float | None = None, reconnect_s: float | None = None) -> float | None:
        """Seconds to wait before the next try, or None when the deadline does not allow another.

        Tries go on until the deadline: the last wait is cut short to end at it. A ``Retry-After`` that
        ends past the deadline is final at once (waiting would not help)."""
        now = time.monotonic()
        if self.first_failure is None:
            self.first_failure = now
        b = self.backoff
        base = min(reconnect_s, MAX_HINT_S) if reconnect_s is not None else b.initial_s
        ceiling = min(max(b.max_s, base), base * b.factor ** self.failures)
        delay = self.rng.uniform(0.0, ceiling) if self.failures else self.rng.uniform(ceiling / 2, ceiling)
        floor = None
        if retry_after is not None:
            floor = min(max(retry_after, 0.0), MAX_HINT_S)
            delay = max(delay, floor + self.rng.uniform(0.0, 0.1 * floor))
        self.failures += 1
        if b.deadline_s is None:
            return delay
        remaining = b.deadline_s - (now - self.first_failure)
        if remaining < MIN_LAST_WAIT_S or (floor is not None and floor > remaining):
            return None
        return min(delay, remaining)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
