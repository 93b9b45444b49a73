"""/v1/jobs: submit, batch-submit, read, list, cancel, and stream a job's events.

Threading model: every JSON handler is a plain ``def`` using the sync Redis client
and RQ (FastAPI runs it in its thread pool); the one streaming handler is
``async def`` using ``redis.asyncio`` throughout, because a thread per open
stream would not scale to hundreds of streams. No handler mixes the two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from redis.exceptions import RedisError

from peng4nn.jobs import (
    EVENT_RESULT,
    TERMINAL_STATUSES,
    JobAccepted,
    JobBatchCreate,
    JobCreate,
    JobPublic,
    JobsAccepted,
    JobsPublic,
    JobStatus,
    ResultEventData,
)
from peng4nn_service import idempotency, jobs
from peng4nn_service.deps import (
    ActiveJobsDep,
    AsyncRedisDep,
    OwnerDep,
    QueueDep,
    RedisDep,
    SettingsDep,
    StoreDep,
    StreamRedisDep,
    StreamSlotsDep,
    v1_router,
)
from peng4nn_service.errors import InvalidInput, StreamEnded, error_responses
from peng4nn_service.responses import model_response
from peng4nn_service.streams import StreamReader
from peng4nn_store.keys import record_key, stream_key

router = v1_router("/jobs", "jobs")

EVENT_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
"""A Redis stream id, which is what every event id is (each part also at most `MAX_ID_PART`)."""

MAX_ID_PART = 2**64 - 1
"""Redis stream ids are two unsigned 64-bit numbers; a larger part would fail in XREAD."""

KEEPALIVE = b": keep-alive\n\n"
"""Comment line sent on idle streams (proxies and clients see the connection alive)."""

SSE_EVENT_SCHEMA = {"type": "object", "properties": {
    "event": {"type": "string", "enum": ["status", "iteration", "result"]},
    "data": {"type": "string", "contentMediaType": "application/json"},
    "id": {"type": "string", "description": "Redis stream id; send it back as Last-Event-ID to resume"}}}
"""OpenAPI item schema of the event stream."""


IdempotencyKey = Annotated[str | None, Header(
    alias=idempotency.HEADER, pattern=idempotency.KEY_PATTERN,
    description="Makes a retried submission safe: the same key with the same body answers the job the first "
                "request created (header Idempotent-Replayed: true); with another body, 409.")]


@router.post("", status_code=202, response_model=JobAccepted, responses=error_responses(409, 413))
def create_job(body: JobCreate, owner: OwnerDep, store: StoreDep, queue: QueueDep, settings: SettingsDep,
               active: ActiveJobsDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Submit one network: validated, queued, answered with its id and links (once per Idempotency-Key)."""
    accepted, replayed = jobs.submit_job(store, queue, settings, owner, body, active, idempotency_key)
    return model_response(accepted, 202, idempotency.response_headers(accepted, replayed))


@router.post("/batch", status_code=202, response_model=JobsAccepted, responses=error_responses(413))
def create_jobs(body: JobBatchCreate, owner: OwnerDep, store: StoreDep, queue: QueueDep,
                settings: SettingsDep, active: ActiveJobsDep) -> Response:
    """Submit a whole generation: all valid or none queued; one id per architecture, in order."""
    if len(body.jobs) > settings.max_batch:
        raise InvalidInput(f"body.jobs: at most {settings.max_batch} jobs per batch; got {len(body.jobs)}",
                           errors=[{"loc": ["body", "jobs"], "msg": f"at most {settings.max_batch} jobs per batch; "
                                                                   f"got {len(body.jobs)}"}])
    accepted = jobs.submit_jobs(store, queue, settings, owner, body.jobs, ("body", "jobs"), indexed=True,
                                active=active)
    return model_response(JobsAccepted(data=accepted, count=len(accepted)), 202)


@router.get("", response_model=JobsPublic)
def read_jobs(owner: OwnerDep, redis: RedisDep, store: StoreDep, status: JobStatus | None = None,
              offset: Annotated[int, Query(ge=0, le=jobs.MAX_OFFSET)] = 0,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
    """Your jobs, newest first, optionally of one status; ``count`` is the total over all pages."""
    return model_response(jobs.list_jobs(redis, store, owner, status, offset, limit))


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
def read_job(job_id: str, owner: OwnerDep, store: StoreDep) -> Response:
    """Status, timestamps, iterations so far, latest prediction, final result or failure reason."""
    return model_response(jobs.to_public(job_id, jobs.get_record(store, owner, job_id)))


@router.get("/{job_id}/result", response_model=ResultEventData, responses=error_responses(404, 409))
def read_job_result(job_id: str, owner: OwnerDep, store: StoreDep) -> Response:
    """The final result of an ended job (409 while it is queued or running)."""
    return model_response(jobs.get_result(store, owner, job_id))


@router.delete("/{job_id}", response_model=JobPublic, status_code=202, responses=error_responses(404, 409))
def cancel_job(job_id: str, owner: OwnerDep, store: StoreDep, queue: QueueDep) -> Response:
    """Cancel: a queued job never runs (200); a running one stops at its next iteration (202)."""
    job = jobs.cancel_job(store, queue, owner, job_id)
    return model_response(job, 200 if job.status is JobStatus.CANCELLED else 202)


async def _stream_start(
    job_id: str, owner: OwnerDep, redis: AsyncRedisDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=EVENT_ID_PATTERN)] = None,
) -> str:
    """Check the job before the stream opens (404 is a normal response) and return the cursor.

    A client resuming after the final event gets 204, which tells SSE clients to stop reconnecting.
    """
    if last_event_id is not None and max(_id_tuple(last_event_id)) > MAX_ID_PART:
        msg = f"each part of an event id is at most {MAX_ID_PART}; got {last_event_id!r}"
        raise InvalidInput(f"header.Last-Event-ID: {msg}", errors=[{"loc": ["header", "Last-Event-ID"], "msg": msg}])
    record = jobs.owned(job_id, owner, await redis.hgetall(record_key(job_id)) if jobs.valid_job_id(job_id) else None)
    cursor = last_event_id or "0-0"
    ended = record["status"] in {s.value for s in TERMINAL_STATUSES}
    if ended and _id_tuple(cursor) >= _id_tuple(record.get("last_event_id", "0-0")):
        raise StreamEnded(f"job {job_id!r} has ended and every event up to {cursor} was delivered")
    return cursor


# Not response_class=EventSourceResponse: FastAPI would then wrap the route in its per-item SSE
# machinery (two tasks and a model per event); the handler returns the stream itself.
@router.get("/{job_id}/events", response_class=Response, responses={
    200: {"description": "text/event-stream of status, iteration and result events (data: JSON of "
                         "StatusEventData, IterationPublic, ResultEventData)",
          "content": {"text/event-stream": {"itemSchema": SSE_EVENT_SCHEMA}}},
    204: {"description": "The job has ended and the client has every event: stop reconnecting."},
    **error_responses(404, 429, 503)})
async def stream_job_events(job_id: str, cursor: Annotated[str, Depends(_stream_start)], owner: OwnerDep,
                            redis: StreamRedisDep, slots: StreamSlotsDep,
                            settings: SettingsDep) -> EventSourceResponse:
    """Server-sent events: ``status``, ``iteration``, final ``result``; resume with ``Last-Event-ID``."""
    release = slots.acquire(owner)  # 429 / 503 before the stream opens
    return HeldEventStream(_events(stream_key(job_id), cursor, redis, settings.sse_keepalive_s), release,
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class HeldEventStream(EventSourceResponse):
    """An event stream that gives its slot back however it ends (done, client gone, shutdown)."""

    def __init__(self, content, release: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _events(key: str, cursor: str, redis, keepalive_s: float) -> AsyncIterator[bytes]:
    """The stream's bytes: entries after ``cursor`` as SSE events (id = stream id), keep-alives when idle.

    Formatted with ``fastapi.sse.format_sse_event`` straight to bytes: no model object and no
    producer/keep-alive tasks per event, which is where a streaming generator route spends its time.
    A Redis failure ends the stream; the client resumes with ``Last-Event-ID``.
    """
    reader = StreamReader(redis, key, cursor)
    last = _id_tuple(cursor)
    entries: list | None = []
    try:
        while True:
            if entries is None:  # idle for a whole keep-alive period
                if not await redis.exists(key):
                    return  # expired
                yield KEEPALIVE
            for event_id, fields in entries or ():
                if _id_tuple(event_id) <= last:
                    continue
                last = _id_tuple(event_id)
                yield format_sse_event(data_str=fields["data"], event=fields["type"], id=event_id)
                if fields["type"] == EVENT_RESULT:
                    return
            entries = await reader.get(keepalive_s)
    except RedisError:
        return


def _id_tuple(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
