"""Periodic housekeeping run by the API and by every worker: abandoned jobs, expired index entries.

An abandoned job is one whose worker stopped sending heartbeats (killed, host
lost): RQ's own registry cleanup finds it once its lease has run out, re-queues
it if it has retries left, and calls our failure callback, which records the
outcome on the job's stream. Running it from the API as well means a job is
never left "running" forever even when its only worker is gone.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from peng4nn.jobs import JobStatus
from worker.events import ALL_OWNERS, index_key, now, record_key

log = logging.getLogger("peng4nn.maintenance")


def run_maintenance(queue: Queue, job_ttl_s: int) -> None:
    """One pass: abandoned jobs (RQ's started-registry cleanup), then expired ids in the global indexes.

    Safe to call from any thread: the failure callback runs under a timer, not SIGALRM.
    """
    # RQ's own lock: API processes and workers never clean the same queue at once (an abandoned
    # job must be re-queued once, not once per cleaner).
    if queue.acquire_maintenance_lock():
        try:
            StartedJobRegistry(name=queue.name, connection=queue.connection, job_class=queue.job_class,
                               serializer=queue.serializer, death_penalty_class=TimerDeathPenalty).cleanup()
        finally:
            queue.release_maintenance_lock()
    prune_indexes(queue.connection, job_ttl_s)


def prune_indexes(redis: Redis, job_ttl_s: int) -> int:
    """Remove ids whose record has expired from the per-status indexes; returns how many."""
    removed = 0
    cutoff = now() - job_ttl_s
    for status in JobStatus:
        index = index_key(ALL_OWNERS, status.value)
        old = redis.zrangebyscore(index, "-inf", cutoff, start=0, num=1000)
        if not old:
            continue
        with redis.pipeline(transaction=False) as pipe:
            for job_id in old:
                pipe.exists(record_key(job_id.decode() if isinstance(job_id, bytes) else job_id))
            alive = pipe.execute()
        dead = [job_id for job_id, exists in zip(old, alive) if not exists]
        if dead:
            removed += redis.zrem(index, *dead)
    return removed
