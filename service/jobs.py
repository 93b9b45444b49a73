"""What the job routes do: validate, create-and-enqueue atomically, read, list, cancel.

Kept apart from the route functions so that those stay 5-20 lines. Everything
here is synchronous (redis-py and RQ block) and runs in the handlers' thread pool.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Callback, Queue, Retry

from peng4nn.datasets import DATASET_NAMES, dataset_info
from peng4nn.jobs import (
    TERMINAL_STATUSES,
    IterationPublic,
    JobAccepted,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobStatus,
    ResultEventData,
    ResultPublic,
    job_links,
)
from peng4nn.policies import PolicyConfigError, make_policy
from peng4nn.spec import SpecError, SpecLimits, analyze_spec, check_schedule
from peng4nn_service import idempotency
from peng4nn_service.errors import InvalidInput, JobNotFound, QuotaExceeded, StateConflict
from peng4nn_service.idempotency import AlreadyClaimed, Claim
from peng4nn_service.quotas import ActiveJobs
from peng4nn_store.encoding import now
from peng4nn_store.job_store import JobStore
from peng4nn_store.keys import index_key, record_key
from peng4nn_store.queue import ON_FAILURE, RUN_JOB
from peng4nn_store.settings import Settings

MAX_ITERATIONS_PER_JOB = 10_000
"""Most iterations (e_max / E) one job may run: each is an event kept on its stream until it expires."""

MAX_OFFSET = 1_000_000_000
"""Largest ``offset`` of ``GET /v1/jobs`` (Redis ranks are 64-bit; no listing is this long)."""


def validate_job(create: JobCreate, loc: tuple = ("body",),
                 max_epochs: float = float(MAX_ITERATIONS_PER_JOB)) -> tuple[dict[str, Any], list[dict]]:
    """Check what pydantic cannot: dataset name, shapes and cost, policy parameters, epochs and iterations.

    Returns the record fields and the list of errors (each ``{loc, msg}``).
    """
    errors: list[dict] = []
    if create.dataset not in DATASET_NAMES:
        errors.append({"loc": (*loc, "dataset"),
                       "msg": f"unknown dataset {create.dataset!r}; available: {', '.join(DATASET_NAMES)}"})
        return {}, errors
    info = dataset_info(create.dataset)
    report = None
    try:
        report = analyze_spec(create.architecture, info.input_shape, info.num_classes, SpecLimits())
    except SpecError as exc:
        errors += [{"loc": (*loc, "architecture", *e["loc"]), "msg": e["msg"]} for e in exc.errors]
    errors += _non_finite_params(create.policy_params, (*loc, "policy_params"))
    try:
        if not errors:
            policy = make_policy(create.policy, estimator=create.estimator, num_classes=info.num_classes,
                                 **create.policy_params)
            errors += _run_length_errors(policy.E, policy.e_max, max_epochs, loc, create)
            check_schedule(create.architecture, policy.e_max)  # the trainer's own check, before any worker
    except SpecError as exc:
        errors += [{"loc": (*loc, "architecture", *e["loc"]), "msg": e["msg"]} for e in exc.errors]
    except (PolicyConfigError, TypeError, ValueError) as exc:
        field = "policy" if "'policy' parameter" in str(exc) else "policy_params"
        errors.append({"loc": (*loc, field), "msg": str(exc)})
    if errors or report is None:
        return {}, errors
    fields = {
        "created_at": now(),
        "dataset": create.dataset,
        "policy": create.policy,
        "shadow": create.shadow,
        "seed": create.seed,
        "search": create.search,
        "label": create.label,
        "params": report.params,
        "flops": report.flops,
        "iterations": 0,
        "attempts": 0,
        "request": create.model_dump_json(by_alias=True),
    }
    return fields, errors


def _non_finite_params(params: dict[str, Any], loc: tuple) -> list[dict]:
    """Policy parameters must be finite: JSON has no infinity, so one would be stored as null."""
    return [{"loc": (*loc, name), "msg": f"must be a finite number; got {value!r}"}
            for name, value in params.items() if isinstance(value, float) and not math.isfinite(value)]


def _run_length_errors(E: float, e_max: float, max_epochs: float, loc: tuple, create: JobCreate) -> list[dict]:
    """The run the policy allows must fit the epochs quota and the iteration bound."""
    where = (*loc, "policy_params", "e_max") if "e_max" in create.policy_params else (*loc, "estimator", "e_max")
    if e_max > max_epochs:
        return [{"loc": where, "msg": f"a job may train at most {max_epochs:g} epochs "
                                      f"(PENG4NN_QUOTA_EPOCHS_PER_JOB); got e_max={e_max:g}"}]
    if e_max / E > MAX_ITERATIONS_PER_JOB:
        return [{"loc": where, "msg": f"e_max / E is {e_max / E:g} iterations; a job may run at most "
                                      f"{MAX_ITERATIONS_PER_JOB} (raise E or lower e_max)"}]
    return []


def submit_jobs(store: JobStore, queue: Queue, settings: Settings, owner: str, creates: list[JobCreate],
                loc_prefix: tuple = ("body",), indexed: bool = False, active: ActiveJobs | None = None,
                claim: Claim | None = None) -> list[JobAccepted]:
    """Validate every job, reserve them in the token's quota, then create and enqueue all of them in one
    Redis transaction (all or nothing).

    With an idempotency ``claim`` the same transaction claims its key, or raises `AlreadyClaimed`;
    either way the reservation is released (by the transaction, or here when it did not run)."""
    validated, errors = [], []
    for i, create in enumerate(creates):
        fields, errs = validate_job(create, (*loc_prefix, i) if indexed else loc_prefix, settings.quota_epochs_per_job)
        validated.append(fields)
        errors += errs
    if errors:
        raise InvalidInput("; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in errors[:5]), errors=errors)

    shared = claim.reservation_name if claim is not None else None
    reservation = active.reserve(owner, len(validated), shared) if active is not None else None
    try:
        return _create_and_enqueue(store, queue, settings, owner, validated, reservation, claim)
    except BaseException:
        _give_back(queue.connection, owner, reservation)
        raise


def _give_back(redis: Redis, owner: str, reservation: str | None) -> None:
    """Release a reservation whose transaction did not run (if Redis is down too, it lapses by itself)."""
    if reservation is None:
        return
    try:
        with redis.pipeline(transaction=False) as pipe:
            ActiveJobs.release(pipe, owner, reservation)
            pipe.execute()
    except RedisError:
        pass


def _create_and_enqueue(store: JobStore, queue: Queue, settings: Settings, owner: str, validated: list[dict],
                        reservation: str | None, claim: Claim | None) -> list[JobAccepted]:
    retry = Retry(max=settings.requeue_on_worker_loss) if settings.requeue_on_worker_loss else None
    accepted, enqueue = [], []
    with queue.connection.pipeline(transaction=True) as pipe:
        if claim is not None:
            pipe.watch(claim.redis_key)  # a racing request that claims it first aborts this transaction
            if pipe.exists(claim.redis_key):
                raise AlreadyClaimed
            pipe.multi()
        for fields in validated:
            job_id = uuid.uuid4().hex
            store.create(job_id, owner, fields, pipeline=pipe)
            enqueue.append(Queue.prepare_data(
                RUN_JOB, args=(job_id,), job_id=job_id, timeout=settings.job_timeout_s,
                result_ttl=settings.result_ttl_s, failure_ttl=settings.failure_ttl_s, retry=retry,
                on_failure=Callback(ON_FAILURE), description=f"peng4nn job {job_id}",
            ))
            accepted.append(JobAccepted(
                id=job_id, status=JobStatus.QUEUED, created_at=_time(fields["created_at"]),
                params=fields["params"], flops=fields["flops"], links=job_links(job_id),
            ))
        queue.enqueue_many(enqueue, pipeline=pipe)
        if claim is not None:
            pipe.set(claim.redis_key, claim.value(accepted[0].id), ex=claim.ttl_s)
        ActiveJobs.release(pipe, owner, reservation)
        try:
            pipe.execute()
        except WatchError:
            raise AlreadyClaimed from None
    return accepted


def submit_job(store: JobStore, queue: Queue, settings: Settings, owner: str, create: JobCreate,
               active: ActiveJobs | None = None, idempotency_key: str | None = None) -> tuple[JobAccepted, bool]:
    """One network, at most once per idempotency key: (the job, whether it was created by an earlier request).

    A replay reserves nothing in the active-jobs quota: a key already claimed is answered before
    reserving, and a claim lost to a racing request gives its reservation back (`submit_jobs`)."""
    if idempotency_key is None:
        return submit_jobs(store, queue, settings, owner, [create], active=active)[0], False
    claim = idempotency.claim_for(owner, idempotency_key, create, settings.idempotency_ttl_s)
    try:
        if store.redis.exists(claim.redis_key):
            raise AlreadyClaimed
        return submit_jobs(store, queue, settings, owner, [create], active=active, claim=claim)[0], False
    except AlreadyClaimed:
        return idempotency.replay(store.redis, store, claim), True
    except QuotaExceeded:  # a racing twin may have taken the last place with this very key: that is its job
        if store.redis.exists(claim.redis_key):
            return idempotency.replay(store.redis, store, claim), True
        raise


def get_record(store: JobStore, owner: str, job_id: str) -> dict[str, str]:
    """The job's record; `JobNotFound` when missing, expired or owned by another token."""
    return owned(job_id, owner, store.get(job_id) if valid_job_id(job_id) else None)


def owned(job_id: str, owner: str, record: dict[str, str] | None) -> dict[str, str]:
    """The owner check of every job read (sync or async): another token's job looks exactly like a missing one."""
    if not record or record.get("owner") != owner:
        raise JobNotFound(job_id)
    return record


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` can be a job id at all (anything else never reaches a Redis key)."""
    return 0 < len(job_id) <= 64 and job_id.isascii() and job_id.isalnum()


def to_public(job_id: str, record: dict[str, str]) -> JobPublic:
    return JobPublic(
        id=job_id,
        status=JobStatus(record["status"]),
        created_at=_time(record["created_at"]),
        started_at=_time(record.get("started_at")),
        ended_at=_time(record.get("ended_at")),
        updated_at=_time(record.get("updated_at")),
        dataset=record.get("dataset", ""),
        policy=record.get("policy", ""),
        shadow=record.get("shadow") == "1",
        seed=_int(record.get("seed")),
        search=record.get("search") or record.get("search_id"),  # records written before the rename
        search_id=record.get("search") or record.get("search_id"),
        label=record.get("label"),
        params=_int(record.get("params")),
        flops=_int(record.get("flops")),
        iterations=_int(record.get("iterations")) or 0,
        latest=IterationPublic.model_validate_json(record["latest"]) if record.get("latest") else None,
        result=ResultPublic.model_validate_json(record["result"]) if record.get("result") else None,
        error=record.get("error") or None,
        attempts=_int(record.get("attempts")) or 0,
        cancel_requested=record.get("cancel_requested") == "1",
        last_event_id=record.get("last_event_id"),
        links=job_links(job_id),
    )


def list_jobs(redis: Redis, store: JobStore, owner: str, status: JobStatus | None, offset: int,
              limit: int) -> JobsPublic:
    """Newest first; records that expired since they were indexed are dropped from the index."""
    index = index_key(owner, status.value if status else None)
    with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(index)
        pipe.zrevrange(index, offset, offset + limit - 1)
        count, ids = pipe.execute()
    with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(record_key(job_id))
        records = pipe.execute()
    data, expired = [], []
    for job_id, record in zip(ids, records):
        if record:
            data.append(to_public(job_id, record))
        else:
            expired.append(job_id)
    if expired:
        redis.zrem(index, *expired)
        count -= len(expired)
    return JobsPublic(data=data, count=count)


def cancel_job(store: JobStore, queue: Queue, owner: str, job_id: str) -> JobPublic:
    """Queued: cancelled now and never runs. Running: flagged; the worker stops at the next iteration."""
    record = get_record(store, owner, job_id)
    status = JobStatus(record["status"])
    if status is JobStatus.QUEUED:
        done = store.finish(job_id, JobStatus.CANCELLED, error="cancelled before it started",
                            expect=[JobStatus.QUEUED])
        if done.ok:
            queue.remove(job_id)
            return to_public(job_id, get_record(store, owner, job_id))
        status = JobStatus(done.status)  # a worker took it meanwhile
    if status is JobStatus.RUNNING:
        flagged = store.apply(job_id, expect=[JobStatus.RUNNING], set_fields={"cancel_requested": True})
        if flagged.ok:
            return to_public(job_id, get_record(store, owner, job_id))
        status = JobStatus(flagged.status)
    raise StateConflict(f"job {job_id!r} is already {status.value}; there is nothing to cancel")


def get_result(store: JobStore, owner: str, job_id: str) -> ResultEventData:
    record = get_record(store, owner, job_id)
    status = JobStatus(record["status"])
    if status not in TERMINAL_STATUSES:
        raise StateConflict(f"job {job_id!r} is {status.value}; its result exists once it has ended")
    result = json.loads(record["result"]) if record.get("result") else None
    return ResultEventData(status=status, result=result, error=record.get("error") or None)


def _time(value: str | float | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def _int(value: str | None) -> int | None:
    return int(float(value)) if value not in (None, "") else None


def _loc(loc) -> str:
    from peng4nn_service.errors import format_loc

    return format_loc(list(loc))
