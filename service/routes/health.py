"""GET /healthz and GET /metrics: for load balancers, compose healthchecks and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from rq import Worker

from peng4nn import __version__
from peng4nn.jobs import JobStatus
from service.deps import QueueDep, RedisDep
from service.errors import error_responses
from service.responses import model_response
from worker.events import ALL_OWNERS, STATS_KEY, index_key

router = APIRouter(tags=["health"], responses=error_responses(503))


class HealthPublic(BaseModel):
    status: str
    """"ok" with at least one live worker, "no_workers" otherwise (jobs wait in the queue)."""
    redis: bool
    workers: int
    queue_depth: int
    version: str


@router.get("/healthz", response_model=HealthPublic)
def read_health(redis: RedisDep, queue: QueueDep) -> Response:
    """Redis reachable (else 503) and how many workers are alive."""
    redis.ping()
    workers = Worker.count(queue=queue)
    return model_response(HealthPublic(status="ok" if workers else "no_workers", redis=True, workers=workers,
                                       queue_depth=queue.count, version=__version__))


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
def read_metrics(redis: RedisDep, queue: QueueDep) -> PlainTextResponse:
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
              "# HELP peng4nn_workers Live RQ workers on the queue.", "# TYPE peng4nn_workers gauge",
              f"peng4nn_workers {Worker.count(queue=queue)}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
