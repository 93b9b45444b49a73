"""GET /healthz (the service: Redis and live workers, for load balancers), GET /livez (this API process, for
its container's health check) and GET /metrics (Prometheus)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from peng4nn import __version__
from peng4nn.jobs import JobStatus
from peng4nn_service.deps import QueueDep, RedisDep, SettingsDep
from peng4nn_service.errors import ErrorPublic
from peng4nn_service.responses import model_response
from peng4nn_store.keys import ALL_OWNERS, STATS_KEY, index_key
from peng4nn_store.liveness import live_workers

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: Literal["ok", "no_workers"] = Field(
        description='"ok" with at least one live worker (200); "no_workers" otherwise (503: jobs wait in the queue).')
    redis: bool
    workers: int = Field(description="Workers whose heartbeat is recent (killed or cut-off workers are not counted).")
    queue_depth: int
    version: str


@router.get("/healthz", response_model=HealthPublic, responses={
    503: {"description": "No live worker (body: HealthPublic, status no_workers), or Redis unavailable (ErrorPublic)",
          "content": {"application/json": {"schema": {"anyOf": [
              {"$ref": "#/components/schemas/HealthPublic"}, {"$ref": "#/components/schemas/ErrorPublic"}]}}}}})
def read_health(redis: RedisDep, queue: QueueDep, settings: SettingsDep) -> Response:
    """Redis reachable and at least one worker alive (200); otherwise 503 saying which."""
    redis.ping()
    workers = live_workers(redis, queue.name, settings.worker_lease_s)
    health = HealthPublic(status="ok" if workers else "no_workers", redis=True, workers=workers,
                          queue_depth=queue.count, version=__version__)
    return model_response(health, 200 if workers else 503)


class LivePublic(BaseModel):
    status: Literal["ok"]
    version: str


@router.get("/livez", response_model=LivePublic)
def read_liveness() -> Response:
    """This API process serves requests (no Redis, no workers asked): the container's own health check."""
    return model_response(LivePublic(status="ok", version=__version__))


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}},
                                                                     503: {"model": ErrorPublic}})
def read_metrics(redis: RedisDep, queue: QueueDep, settings: SettingsDep) -> PlainTextResponse:
    """Prometheus text: jobs by state, iterations, queue depth, live workers."""
    with redis.pipeline(transaction=False) as pipe:
        for status in JobStatus:
            pipe.zcard(index_key(ALL_OWNERS, status.value))
        pipe.hgetall(STATS_KEY)
        *counts, stats = pipe.execute()
    lines = ["# HELP peng4nn_jobs Jobs stored (not yet expired), by state.", "# TYPE peng4nn_jobs gauge"]
    lines += [f'peng4nn_jobs{{state="{s.value}"}} {n}' for s, n in zip(JobStatus, counts)]
    for name, field, help_text in (
        ("peng4nn_jobs_created_total", "jobs_created", "Jobs accepted since the store was created."),
        ("peng4nn_iterations_total", "events_iteration", "Training iterations reported by workers."),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {int(stats.get(field, 0))}"]
    lines += ["# HELP peng4nn_queue_depth Jobs waiting in the RQ queue.", "# TYPE peng4nn_queue_depth gauge",
              f"peng4nn_queue_depth {queue.count}",
              "# HELP peng4nn_workers Workers with a recent heartbeat.", "# TYPE peng4nn_workers gauge",
              f"peng4nn_workers {live_workers(redis, queue.name, settings.worker_lease_s)}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
