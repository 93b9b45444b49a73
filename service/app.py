"""The FastAPI application: `create_app()` wires settings, Redis, error handling and routers.

``uvicorn --factory peng4nn_service.app:create_app`` or `peng4nn serve` run it. Importing
this module never imports torch: jobs are enqueued by dotted path.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from peng4nn import __version__
from peng4nn_service.access import AccessGuard
from peng4nn_service.curve_sessions import CurveSessions
from peng4nn_service.errors import install_error_handlers
from peng4nn_service.fast_path import FastPaths
from peng4nn_service.fit_batching import FitBatcher
from peng4nn_service.middleware import BodySizeLimit
from peng4nn_service.quotas import ActiveJobs, RateLimiter, StreamSlots
from peng4nn_service.routes import curves, datasets, health, jobs
from peng4nn_store.job_store import JobStore
from peng4nn_store.maintenance import run_maintenance
from peng4nn_store.queue import make_queue
from peng4nn_store.settings import Settings, get_settings

STREAM_POOL_SPARE = 4
"""Connections the streams' pool has beyond one per open stream (its expiry checks)."""

log = logging.getLogger("peng4nn.service")

ROUTERS = (jobs.router, curves.router, datasets.router, health.router)
"""Mounted in this order (the busiest first: requests are matched router by router); a new resource
adds its router here (made with `peng4nn_service.deps.v1_router`)."""


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Open the Redis clients and the maintenance loop; close them on shutdown.

    Event streams read through a pool of their own (``stream_redis``), sized to the number of
    streams the process admits, so open streams can never take the connections requests need.
    """
    settings: Settings = app.state.settings
    app.state.redis = Redis.from_url(settings.redis_url, decode_responses=True,
                                     max_connections=settings.redis_max_connections)
    app.state.rq_redis = Redis.from_url(settings.redis_url, max_connections=settings.redis_max_connections)
    app.state.async_redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True,
                                                max_connections=settings.redis_max_connections)
    app.state.stream_redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True,
                                                 max_connections=settings.stream_pool_size + STREAM_POOL_SPARE)
    app.state.store = JobStore(app.state.redis, settings.job_ttl_s)
    app.state.queue = make_queue(settings.queue_name, app.state.rq_redis)
    app.state.active_jobs = ActiveJobs(app.state.redis, settings.quota_active_jobs)
    app.state.curve_sessions = CurveSessions(app.state.async_redis, settings)
    app.state.fit_batcher = FitBatcher()
    app.state.stream_slots = StreamSlots(settings.stream_pool_size, settings.quota_open_streams)
    maintenance = asyncio.create_task(_maintenance_loop(app.state.queue, settings))
    try:
        yield
    finally:
        maintenance.cancel()
        with suppress(asyncio.CancelledError):
            await maintenance
        await app.state.stream_redis.aclose()
        await app.state.async_redis.aclose()
        app.state.redis.close()
        app.state.rq_redis.close()


async def _maintenance_loop(queue: Queue, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.maintenance_interval_s)
        try:
            await asyncio.to_thread(run_maintenance, queue, settings.job_ttl_s, settings.retain_ended_jobs)
        except Exception:  # keep the loop alive through Redis outages; each failure is logged
            log.warning("maintenance pass failed", exc_info=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the environment (read once)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="PEng4NN",
        version=__version__,
        summary="Performance estimation for neural architecture search: submit networks, stream predictions.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Outermost last: the token and rate check, then the body size limit, then the hot POSTs.
    app.add_middleware(FastPaths)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessGuard, tokens=settings.api_tokens,
                       limiter=RateLimiter(settings.quota_requests_per_s, settings.quota_request_burst))
    for router in ROUTERS:
        app.include_router(router)
    return app
