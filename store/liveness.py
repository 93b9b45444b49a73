"""Which workers are alive: the ones whose heartbeat is recent, not the ones RQ still lists.

RQ's worker registry is cleaned only by live workers' maintenance, so a worker killed (or cut
off from Redis) stays listed, and counted by ``Worker.count``, for minutes. Health and metrics
count a worker only while its ``last_heartbeat`` is at most `worker_ttl_s` old: an idle worker
beats every ``worker_ttl - 15`` s (at least every second) while it waits for jobs, a busy one
every ``lease / 3`` s (`peng4nn_worker.runner.LeasedWorker`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from redis import Redis
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

WORKER_TTL_FLOOR_S = 4
"""Shortest worker TTL; with the default 30 s lease a worker's TTL is 60 s."""


def worker_ttl_s(lease_s: int) -> int:
    """RQ ``worker_ttl``, and how old a heartbeat may be for the worker to count as alive."""
    return max(WORKER_TTL_FLOOR_S, 2 * lease_s)


def live_workers(redis: Redis, queue_name: str, lease_s: int, now: datetime | None = None) -> int:
    """Workers of ``queue_name`` whose last heartbeat is recent enough (any client: bytes or decoded)."""
    keys = list(redis.smembers(WORKERS_BY_QUEUE_KEY % queue_name))
    if not keys:
        return 0
    with redis.pipeline(transaction=False) as pipe:
        for worker_key in keys:
            pipe.hget(worker_key, "last_heartbeat")
        beats = pipe.execute()
    now = now or datetime.now(timezone.utc)
    limit = worker_ttl_s(lease_s)
    alive = 0
    for beat in beats:
        if beat is None:
            continue
        try:
            age = (now - utcparse(beat.decode() if isinstance(beat, bytes) else beat)).total_seconds()
        except ValueError:
            continue
        alive += age <= limit
    return alive
