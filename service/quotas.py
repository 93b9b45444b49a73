"""Per-token quotas: what one tenant may hold or do, so it cannot crowd out the others.

Counted where the resource lives. Jobs live in Redis and are shared by every API process,
so the active-jobs and sessions quotas are counted in Redis, atomically (Lua). Request
rate and open event streams cost this API process's CPU and Redis connections, so they
are counted in the process (with K API processes a token may get up to K times those two).
Over a quota that frees up with time is 429 with ``Retry-After``; a request that is too
large for its quota (points per post, epochs per job) can never succeed as sent, so it is
422 naming the field, not 429 (docs/SECURITY.md). Settings: ``PENG4NN_QUOTA_*``; 0 = off.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from peng4nn.jobs import JobStatus
from peng4nn_service.errors import InvalidInput, QuotaExceeded, ServiceUnavailable
from peng4nn_store.keys import index_key, reservations_key, sessions_quota_key

RESERVATION_TTL_S = 30.0
"""A reservation not released by then (its API process died mid-submission) stops counting."""

# KEYS: the owner's queued index, running index, reservations; ARGV: n, limit, now_ms, ttl_ms, member.
# Counts queued + running + reserved; reserves n when they fit and returns -1, else returns the count.
# A member already held (an idempotent submission's twin, see `ActiveJobs.reserve`) is refreshed, not added.
_RESERVE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[3], ARGV[5]) then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return -1
end
local used = redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  used = used + tonumber(string.match(member, ':(%d+)$'))
end
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return used end
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return -1
"""

# KEYS: the owner's session set; ARGV: limit, now_ms, ttl_ms, session id. -1 = admitted, else the count.
_SESSION_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return n end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return -1
"""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per owner: ``rate`` requests/s sustained, ``burst`` at once; rate 0 = no limit."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, owner: str) -> None:
        """Take one request from the owner's bucket, or raise `QuotaExceeded` saying when to retry."""
        if self.rate <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            raise QuotaExceeded(
                f"this token made more than {self.rate:g} requests per second (PENG4NN_QUOTA_REQUESTS_PER_S, "
                f"burst PENG4NN_QUOTA_REQUEST_BURST={self.burst})", (1.0 - bucket.tokens) / self.rate, "rate_limited")
        bucket.tokens -= 1.0


class StreamSlots:
    """Open event streams of this API process: at most ``capacity`` in all and ``per_owner`` per token.

    The capacity is the size of the streams' own Redis pool, so streams can never take the
    connections that submissions and reads use; a full process is 503 (try another process or
    later), a token at its own limit 429.
    """

    def __init__(self, capacity: int, per_owner: int):
        self.capacity, self.per_owner = capacity, per_owner
        self.open = 0
        self._by_owner: Counter[str] = Counter()

    def acquire(self, owner: str) -> Callable[[], None]:
        """Take a slot for ``owner``; returns the function that gives it back (once, however often called)."""
        if self.per_owner and self._by_owner[owner] >= self.per_owner:
            raise QuotaExceeded(f"this token already has {self._by_owner[owner]} event streams open on this API "
                                f"process (PENG4NN_QUOTA_OPEN_STREAMS={self.per_owner}); close one or retry later",
                                5, "too_many_streams")
        if self.open >= self.capacity:
            raise ServiceUnavailable(f"this API process is serving its maximum of {self.capacity} event streams "
                                     "(PENG4NN_STREAM_POOL_SIZE); retry later", "streams_full", 5)
        self.open += 1
        self._by_owner[owner] += 1
        held = [True]

        def release() -> None:
            if held.pop() if held else False:
                self._release(owner)

        return release

    def _release(self, owner: str) -> None:
        self.open -= 1
        self._by_owner[owner] -= 1
        if self._by_owner[owner] <= 0:
            del self._by_owner[owner]


class ActiveJobs:
    """The queued-plus-running quota, reserved atomically before a submission writes anything.

    A reservation counts until the submission's transaction has run (`release` is queued in
    that same transaction), so concurrent submissions of one token can never overshoot.
    """

    def __init__(self, redis, limit: int):
        self.limit = limit
        self._reserve = redis.register_script(_RESERVE_LUA)

    def reserve(self, owner: str, n: int, shared: str | None = None) -> str | None:
        """Reserve ``n`` jobs for ``owner``; the reservation to release, or `QuotaExceeded`.

        ``shared``: requests that can create at most one job between them (retries racing with one
        Idempotency-Key) name the same reservation, so they hold one place, not one each."""
        if not self.limit:
            return None
        if n > self.limit:
            raise InvalidInput(f"body.jobs: a batch of {n} jobs can never fit this token's quota of {self.limit} "
                               "queued or running jobs (PENG4NN_QUOTA_ACTIVE_JOBS)",
                               errors=[{"loc": ["body", "jobs"], "msg": f"at most {self.limit} jobs"}])
        member = f"{shared or secrets.token_hex(8)}:{n}"
        now_ms = int(time.time() * 1000)
        used = self._reserve(keys=[index_key(owner, JobStatus.QUEUED.value), index_key(owner, JobStatus.RUNNING.value),
                                   reservations_key(owner)],
                             args=[n, self.limit, now_ms, int(RESERVATION_TTL_S * 1000), member])
        if int(used) >= 0:
            raise QuotaExceeded(f"this token has {int(used)} jobs queued or running and may have at most "
                                f"{self.limit} (PENG4NN_QUOTA_ACTIVE_JOBS); {n} more do not fit: retry when some "
                                "have ended", 30, "too_many_jobs")
        return member

    @staticmethod
    def release(pipe, owner: str, member: str | None) -> None:
        if member is not None:
            pipe.zrem(reservations_key(owner), member)


async def admit_session(redis, owner: str, limit: int, ttl_s: float, session_id: str) -> None:
    """Count a new observation session against its token's quota (sessions opened within the TTL)."""
    if not limit:
        return
    now_ms = int(time.time() * 1000)
    used = await redis.eval(_SESSION_LUA, 1, sessions_quota_key(owner), limit, now_ms, max(1, int(ttl_s * 1000)),
                            session_id)
    if int(used) >= 0:
        raise QuotaExceeded(f"this token has {int(used)} observation sessions and may have at most {limit} "
                            "(PENG4NN_QUOTA_SESSIONS); delete finished sessions or retry later", 60,
                            "too_many_sessions")


def check_points_per_post(n: int, limit: int) -> None:
    if n > limit:
        raise InvalidInput(f"body.points: at most {limit} points per post (PENG4NN_QUOTA_POINTS_PER_POST); got {n}. "
                           "Post them in several requests.",
                           errors=[{"loc": ["body", "points"], "msg": f"at most {limit} points per post; got {n}"}])
