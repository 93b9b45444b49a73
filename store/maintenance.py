"""Periodic housekeeping run by the API and by every worker: abandoned jobs, expired index entries, retention.

An abandoned job is one whose worker stopped sending heartbeats (killed, host
lost): RQ's own registry cleanup finds it once its lease has run out, re-queues
it if it has retries left, and calls our failure callback, which records the
outcome on the job's stream. Running it from the API as well means a job is
never left "running" forever even when its only worker is gone.

Retention (docs/SECURITY.md): besides every key's TTL, the API's pass keeps at most
``PENG4NN_RETAIN_ENDED_JOBS`` ended jobs in all, deleting the oldest first, so the number of
jobs Redis holds is bounded by that plus the tokens' active-jobs quotas.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty
from rq.worker_registration import clean_worker_registry

from peng4nn.jobs import TERMINAL_STATUSES, JobStatus
from peng4nn_store.encoding import now, text
from peng4nn_store.keys import ALL_OWNERS, index_key, record_key, stream_key

log = logging.getLogger("peng4nn.maintenance")


TRIM_BATCH = 1000
"""Most ended jobs one maintenance pass deletes (a large excess is worked off over several passes)."""


def run_maintenance(queue: Queue, job_ttl_s: int, retain_ended_jobs: int | None = None) -> None:
    """One pass: abandoned jobs (RQ's started-registry cleanup), dead workers' registry entries,
    expired ids in the global indexes, then the retention limit on ended jobs.

    Safe to call from any thread: the failure callback runs under a timer, not SIGALRM.
    """
    # RQ's own lock: API processes and workers never clean the same queue at once (an abandoned
    # job must be re-queued once, not once per cleaner).
    if queue.acquire_maintenance_lock():
        try:
            StartedJobRegistry(name=queue.name, connection=queue.connection, job_class=queue.job_class,
                               serializer=queue.serializer, death_penalty_class=TimerDeathPenalty).cleanup()
            clean_worker_registry(queue)
            if retain_ended_jobs is not None:
                trim_ended_jobs(queue, retain_ended_jobs)
        finally:
            queue.release_maintenance_lock()
    prune_indexes(queue.connection, job_ttl_s)


def trim_ended_jobs(queue: Queue, keep: int) -> int:
    """Delete the oldest ended jobs beyond ``keep``: our record, stream and index entries, and RQ's job
    hash, results and registry entries (RQ would keep those for its result or failure TTL); returns how many."""
    redis = queue.connection
    ended = [index_key(ALL_OWNERS, s.value) for s in TERMINAL_STATUSES]
    with redis.pipeline(transaction=False) as pipe:
        for index in ended:
            pipe.zcard(index)
        excess = min(sum(pipe.execute()) - keep, TRIM_BATCH)
    if excess <= 0:
        return 0
    with redis.pipeline(transaction=False) as pipe:
        for index in ended:
            pipe.zrange(index, 0, excess - 1, withscores=True)
        oldest = sorted(((score, text(job_id), index) for index, rows in zip(ended, pipe.execute())
                         for job_id, score in rows))[:excess]
    with redis.pipeline(transaction=False) as pipe:
        for _, job_id, _ in oldest:
            pipe.hmget(record_key(job_id), "owner", "status")
        records = pipe.execute()
    rq_jobs = queue.job_class.fetch_many([job_id for _, job_id, _ in oldest], connection=redis,
                                         serializer=queue.serializer)
    with redis.pipeline(transaction=False) as pipe:
        for (_, job_id, index), (owner, status), rq_job in zip(oldest, records, rq_jobs):
            pipe.delete(record_key(job_id), stream_key(job_id))
            pipe.zrem(index, job_id)
            if owner is not None:
                owner, status = text(owner), text(status)
                pipe.zrem(index_key(owner), job_id)
                pipe.zrem(index_key(owner, status), job_id)
            if rq_job is not None:
                rq_job.delete(pipeline=pipe)
        pipe.execute()
    log.info("retention: deleted the %d oldest ended jobs (PENG4NN_RETAIN_ENDED_JOBS=%d)", len(oldest), keep)
    return len(oldest)


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
                pipe.exists(record_key(text(job_id)))
            alive = pipe.execute()
        dead = [job_id for job_id, exists in zip(old, alive) if not exists]
        if dead:
            removed += redis.zrem(index, *dead)
    return removed
