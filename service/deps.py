"""Typed dependencies: settings, Redis clients, the job store, the caller's identity.

Routes take these as annotated parameters (``redis: RedisDep``); tests swap them
with ``app.dependency_overrides``. A new resource gets its router from
`v1_router()`, which carries the bearer-token check and the common error responses.
They are ``async def`` because they only read ``app.state`` (no thread hop).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from peng4nn_service.access import PUBLIC_OWNER, authenticate, owner_id  # noqa: F401  (re-exported)
from peng4nn_service.errors import error_responses
from peng4nn_service.json_body import StrictJSONRoute
from peng4nn_service.quotas import ActiveJobs, StreamSlots
from peng4nn_store.job_store import JobStore
from peng4nn_store.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_redis(request: Request) -> Redis:
    """Sync client (decoded strings) for plain ``def`` handlers."""
    return request.app.state.redis


async def get_async_redis(request: Request) -> AsyncRedis:
    """Async client (decoded strings) for ``async def`` handlers (the SSE stream)."""
    return request.app.state.async_redis


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_queue(request: Request) -> Queue:
    """The RQ queue (on its own bytes client: RQ pickles)."""
    return request.app.state.queue


async def get_stream_redis(request: Request) -> AsyncRedis:
    """Async client (decoded) on the event streams' own bounded pool."""
    return request.app.state.stream_redis


async def get_stream_slots(request: Request) -> StreamSlots:
    return request.app.state.stream_slots


async def get_active_jobs(request: Request) -> ActiveJobs:
    return request.app.state.active_jobs


_bearer = HTTPBearer(auto_error=False, description="One of the tokens in PENG4NN_API_TOKENS (when set).")


async def get_owner(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> str:
    """Who is calling: a digest of their bearer token, or "public" when tokens are off (401 if missing/wrong).

    `peng4nn_service.access.AccessGuard` has already checked the token before the body was read; this reads its answer.
    """
    owner = getattr(request.state, "owner", None)
    if owner is None:  # an app without the guard in front (it is always installed by create_app)
        owner = authenticate(request.app.state.settings.api_tokens, request.headers.get("authorization"))
    return owner


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
AsyncRedisDep = Annotated[AsyncRedis, Depends(get_async_redis)]
StoreDep = Annotated[JobStore, Depends(get_store)]
QueueDep = Annotated[Queue, Depends(get_queue)]
OwnerDep = Annotated[str, Depends(get_owner)]
StreamRedisDep = Annotated[AsyncRedis, Depends(get_stream_redis)]
StreamSlotsDep = Annotated[StreamSlots, Depends(get_stream_slots)]
ActiveJobsDep = Annotated[ActiveJobs, Depends(get_active_jobs)]


def v1_router(prefix: str, tag: str) -> APIRouter:
    """A router under ``/v1<prefix>`` that requires a token when tokens are configured."""
    return APIRouter(
        prefix=f"/v1{prefix}",
        tags=[tag],
        dependencies=[Depends(get_owner)],
        responses=error_responses(401, 422, 429, 503),
        route_class=StrictJSONRoute,
    )
