"""RQ job entry points: run one training job, and record failures RQ reports to us.

The worker only adapts the library's trainer to the job's stream: each
`IterationEvent` becomes an ``iteration`` event, the end of training becomes
the terminal ``status`` + ``result`` events. torch is imported inside
`run_job` so that the API (which enqueues by dotted path, and may run
`on_job_failure` during maintenance) never imports it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rq import get_current_job
from rq.job import Job

from peng4nn.datasets import dataset_info
from peng4nn.jobs import EVENT_ITERATION, JobCreate, JobStatus
from peng4nn.policies import StoppingPolicy, make_policy
from peng4nn_store import searches
from peng4nn_store.encoding import clean_json, dumps, now, text
from peng4nn_store.job_store import JobStore
from peng4nn_store.keys import networks_key, record_key
from peng4nn_store.settings import get_settings
from peng4nn_worker.outage import RedisRetry

log = logging.getLogger("peng4nn.worker")

REASON_CANCELLED = "cancelled"
"""The trainer's reason when ``should_stop()`` ended the run."""

REASON_OUT_OF_MEMORY = "out_of_memory"

_shutdown = threading.Event()
"""Set when this worker process is asked to stop: the running job stops at its next iteration and is re-queued."""

_device: str | None = None
"""Device the trainer uses in this process (``peng4nn worker --device``); None = the trainer's default."""

_populations = searches.Populations()
"""Searches this worker has seen: kept between jobs, so a search's references are scored once per process."""


def configure(device: str | None) -> None:
    global _device
    _device = device


def request_shutdown() -> None:
    _shutdown.set()


def shutting_down() -> bool:
    return _shutdown.is_set()


def shutdown_event() -> threading.Event:
    return _shutdown


def _retry() -> RedisRetry:
    """Redis calls of a job ride out outages of up to PENG4NN_WORKER_REDIS_RETRY_S, unless the worker stops."""
    return RedisRetry(get_settings().worker_redis_retry_s, _shutdown)


class WorkerShutdown(Exception):
    """Raised out of a job interrupted by a worker shutdown so that RQ re-queues it (if it has retries left)."""


def run_job(job_id: str) -> dict[str, Any]:
    """Train the job's network and publish every iteration; the entry point RQ calls by dotted path."""
    rq_job = get_current_job()
    settings = get_settings()
    store = JobStore(rq_job.connection, settings.job_ttl_s)
    retry = _retry()
    record = retry(store.get, job_id)
    if record is None:
        return {"skipped": "expired"}
    attempt = int(record.get("attempts") or 0) + 1
    started = retry(
        store.transition,
        job_id, JobStatus.RUNNING, expect=[JobStatus.QUEUED], attempt=attempt, incr={"attempts": 1},
        set_fields={"started_at": now(), "worker": getattr(rq_job, "worker_name", None) or "", "iterations": 0,
                    "latest": "", "error": "", "cancel_requested": False},
    )
    if not started.ok:
        return {"skipped": started.status}  # cancelled while queued

    try:
        result = _train(job_id, JobCreate.model_validate_json(record["request"]), store, settings,
                        text(record.get("owner")) or "", retry)
    except Exception as exc:
        # A job that raised is final: RQ's retries are kept for lost workers only.
        rq_job.retries_left = 0
        retry(store.finish, job_id, JobStatus.FAILED, error=_describe(exc, rq_job), expect=[JobStatus.RUNNING])
        raise
    return _finish(job_id, result, store, rq_job, retry)


def _train(job_id: str, request: JobCreate, store: JobStore, settings, owner: str = "",
           retry: RedisRetry | None = None) -> Any:
    from peng4nn.train import train_and_estimate  # torch: only ever imported in the worker

    spec = request.architecture
    if request.seed is not None:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": request.seed})})
    info = dataset_info(request.dataset)
    retry = retry or _retry()
    search = searches.scoped(owner, request.search) if request.search else None
    policy = _policy(request, info.num_classes, store.redis, search, retry)
    key = record_key(job_id)

    def publish(event) -> None:
        # Refused when the job is no longer running (cancelled, or failed/re-queued by the lease rule
        # during an outage): should_stop() then ends the run.
        data = dumps(clean_json(event.to_dict()))
        retry(store.apply, job_id, expect=[JobStatus.RUNNING], set_fields={"latest": data, "updated_at": now()},
              incr={"iterations": 1}, events=[(EVENT_ITERATION, data)])

    def should_stop() -> bool:
        status, cancel = retry(store.redis.hmget, key, "status", "cancel_requested")
        return _shutdown.is_set() or text(status) != JobStatus.RUNNING.value or text(cancel) == "1"

    try:
        return train_and_estimate(spec, request.dataset, policy=policy, device=_device, shadow=request.shadow,
                                  on_iteration=publish, should_stop=should_stop, data_root=settings.data_root,
                                  download=settings.download)
    finally:
        if search and not _shutdown.is_set():  # a re-queued job runs again: it has not finished
            _finish_in_search(policy, search, store.redis, settings.job_ttl_s, retry)


def _policy(request: JobCreate, num_classes: int, redis, search: str | None,
            retry: RedisRetry | None = None) -> StoppingPolicy:
    """The job's policy; a population-aware one ranks against the job's (owner-scoped) search, kept in Redis."""
    retry = retry or _retry()
    if not (search and searches.is_search_policy(request.policy)):
        return make_policy(request.policy, estimator=request.estimator, num_classes=num_classes,
                           **request.policy_params)
    population = _populations.get(search, request.policy, request.estimator, num_classes,
                                  request.policy_params, stored=retry(redis.llen, networks_key(search)))
    pull = searches.source(redis, search)
    population.source = lambda n: retry(pull, n)  # pulled before every decision
    return population()


def _finish_in_search(policy: StoppingPolicy, search: str, redis, ttl_s: float,
                      retry: RedisRetry | None = None) -> None:
    """`policy.finish()` for a service: the network goes to the search's list in Redis, which every
    process (this one included) learns from on its next decision."""
    outcome = getattr(policy, "outcome", None)
    network = outcome() if outcome is not None else None
    if network is not None:
        (retry or _retry())(searches.append, redis, search, network, ttl_s)


def _finish(job_id: str, result, store: JobStore, rq_job: Job, retry: RedisRetry) -> dict[str, Any]:
    data = result.to_dict()
    data.pop("events", None)
    running = [JobStatus.RUNNING]
    if result.reason == REASON_CANCELLED:
        if retry(store.cancel_requested, job_id) or not _shutdown.is_set():
            done = retry(store.finish, job_id, JobStatus.CANCELLED, result=data, expect=running,
                         error=f"cancelled by request after {result.epochs_trained:g} epochs")
            if not done.ok and done.status != JobStatus.CANCELLED.value:  # the lease rule decided meanwhile
                return {"status": done.status, "superseded": True}
            return {"status": JobStatus.CANCELLED.value}
        if rq_job.retries_left:
            reason = f"worker shut down after {result.epochs_trained:g} epochs; re-queued"
            retry(store.transition, job_id, JobStatus.QUEUED, expect=running, reason=reason,
                  set_fields={"error": reason})
            raise WorkerShutdown("worker shut down mid-job; RQ re-queues it")
        retry(store.finish, job_id, JobStatus.FAILED, result=data, expect=running,
              error=f"worker shut down after {result.epochs_trained:g} epochs (no re-queues left)")
        return {"status": JobStatus.FAILED.value}
    if result.reason == REASON_OUT_OF_MEMORY:
        retry(store.finish, job_id, JobStatus.FAILED, result=data, expect=running,
              error=f"out of memory on {result.device} after {result.epochs_trained:g} epochs")
        return {"status": JobStatus.FAILED.value}
    converged = bool(result.converged or result.shadow_converged)
    status = JobStatus.CONVERGED if converged else JobStatus.COMPLETED
    retry(store.finish, job_id, status, result=data, expect=running)
    return {"status": status.value}


def on_job_failure(job: Job, connection, exc_type, exc_value, tb) -> None:
    """RQ failure callback: timeouts, crashes and abandoned jobs (worker lost) end on the stream too.

    For an abandoned job RQ calls this before re-queuing it, so a job with
    retries left is set back to queued rather than failed.
    """
    from rq.exceptions import AbandonedJobError

    settings = get_settings()
    store = JobStore(connection, settings.job_ttl_s)
    job_id = job.id
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        lost = (f"worker {job.worker_name or '?'} stopped sending heartbeats mid-job "
                f"(killed, host lost, or cut off from Redis for over {settings.worker_lease_s} s)")
        if job.retries_left:
            store.transition(job_id, JobStatus.QUEUED, expect=[JobStatus.RUNNING], reason=f"{lost}; re-queued",
                             set_fields={"error": f"{lost}; re-queued"})
        else:
            store.finish(job_id, JobStatus.FAILED, error=lost, expect=[JobStatus.RUNNING])
        return
    if exc_type is not None and issubclass(exc_type, WorkerShutdown):
        return  # already set back to queued by run_job
    error = _describe(exc_value, job) if exc_value is not None else "job failed"
    store.finish(job_id, JobStatus.FAILED, error=error, expect=[JobStatus.RUNNING, JobStatus.QUEUED])


def _describe(exc: BaseException, job: Job) -> str:
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, JobTimeoutException):
        return f"timed out after {job.timeout} s (PENG4NN_JOB_TIMEOUT_S)"
    return f"{type(exc).__name__}: {exc}"
