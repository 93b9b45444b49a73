"""The one settings class of the API processes, the workers and `peng4nn serve`, read once from the
environment (``PENG4NN_*``, ``REDIS_URL``) by `get_settings`.

Every default is a named constant below or in `peng4nn.defaults` (the engine's), so a number is
written once; docs/SERVICE.md lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Used only when a process is started without REDIS_URL outside `peng4nn serve`."""

DEFAULT_QUEUE = "peng4nn"
"""RQ queue the API enqueues on and the workers listen to."""

DEFAULT_WORKER_LEASE_S = 30
"""A running job whose worker sent no heartbeat for this long is abandoned (re-queued or failed)."""

DEFAULT_CURVE_TTL_S = 24 * 3600.0
"""An observation session untouched this long is deleted by Redis."""

DEFAULT_CURVE_CACHE_SIZE = 4096
"""Session policies each API process keeps; the least recently used are dropped and rebuilt when needed."""

DEFAULT_CURVE_CACHE_POINTS = 200_000
"""Points all cached session policies may hold together: a kept policy costs ~350 bytes per point it has
seen (measured: 40 points ~11 KB, 1,000 points ~340 KB), so the cache stays under ~70 MB per process
however long the sessions are (4,096 full sessions would be 1.4 GB)."""

DEFAULT_CURVE_MAX_POINTS = 1_000
"""Points one session may hold: bounds memory and the cost of a replay (a fit per point)."""

DEFAULT_EMBEDDED_MAXMEMORY = "2gb"
"""Memory cap of the embedded Redis of `peng4nn serve` (noeviction: a full store refuses writes)."""


class Settings(BaseSettings):
    """Every knob of the API and the workers; each has a safe default."""

    model_config = SettingsConfigDict(env_prefix="PENG4NN_", extra="ignore", frozen=True, populate_by_name=True)

    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias=AliasChoices("REDIS_URL", "PENG4NN_REDIS_URL"))
    api_tokens: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="Comma-separated bearer tokens; empty = no access control."
    )
    queue_name: str = Field(DEFAULT_QUEUE, description="RQ queue the API enqueues on and workers listen to.")
    job_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Job records and event streams expire this long after their last change.")
    job_timeout_s: int = Field(6 * 3600, ge=1, description="RQ job_timeout: a job running longer is failed.")
    result_ttl_s: int = Field(24 * 3600, ge=1, description="RQ result_ttl (our own record keeps the result for job_ttl_s).")
    failure_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="RQ failure_ttl.")
    requeue_on_worker_loss: int = Field(1, ge=0, le=10, description="Times a job whose worker died is re-queued before it is failed.")
    worker_lease_s: int = Field(DEFAULT_WORKER_LEASE_S, ge=1, description="A running job whose worker sent no heartbeat for this long is abandoned.")
    maintenance_interval_s: float = Field(10.0, gt=0, description="How often the API and workers look for abandoned jobs.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Larger request bodies are refused with 413.")
    max_batch: int = Field(1000, ge=1, description="Most jobs in one POST /v1/jobs/batch.")
    idempotency_ttl_s: int = Field(24 * 3600, ge=60, description="How long an Idempotency-Key of POST /v1/jobs "
                                   "is remembered.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Idle streams get a keep-alive comment this often.")
    data_root: str | None = Field(None, description="Where workers keep downloaded datasets.")
    download: bool = Field(False, description="Let workers download datasets that are not on disk.")
    redis_max_connections: int = Field(
        1000, ge=1, description="Redis pool per API process for requests (event streams have their own pool).")
    require_tokens: bool = Field(
        False, description="Refuse to start without PENG4NN_API_TOKENS (compose and non-loopback `serve` turn it on).")
    # ---- quotas (docs/SECURITY.md); 0 turns a quota off
    quota_active_jobs: int = Field(
        1000, ge=0, description="Queued plus running jobs one token may have (all API processes together).")
    quota_open_streams: int = Field(100, ge=0, description="Event streams one token may hold open per API process.")
    quota_requests_per_s: float = Field(
        1000.0, ge=0, allow_inf_nan=False, description="Sustained /v1 requests per second per token per API process.")
    quota_request_burst: int = Field(2000, ge=1, description="Requests a token may make at once above the rate.")
    quota_points_per_post: int = Field(
        100, ge=1, le=1000, description="Observation points in one POST /v1/curves/{id}/observations.")
    quota_epochs_per_job: float = Field(
        1000.0, gt=0, le=10_000, allow_inf_nan=False, description="Largest e_max a job may train to.")
    quota_sessions: int = Field(
        10_000, ge=0, description="Observation sessions one token may have opened within the session TTL.")
    stream_pool_size: int = Field(
        1000, ge=1, description="Event streams one API process serves at once (their own Redis connections).")
    retain_ended_jobs: int = Field(
        20_000, ge=1, description="Ended jobs kept in Redis (all tokens); the maintenance pass deletes the oldest.")
    redis_password: SecretStr | None = Field(
        None, description="Password of the embedded Redis of `peng4nn serve`; default: a new random one per start.")
    redis_maxmemory: str = Field(
        DEFAULT_EMBEDDED_MAXMEMORY, pattern=r"^\d+(b|kb|mb|gb)?$", description="Memory cap of the embedded Redis of `peng4nn serve` "
        "(noeviction: a full store refuses writes with 503 store_full).")
    worker_heartbeat_file: str | None = Field(
        None, description="A file each worker touches at every heartbeat it sends, for a container's health "
        "check of that worker process (python -m peng4nn_worker.health); unset: none.")
    worker_redis_retry_s: float = Field(
        300.0, ge=0, allow_inf_nan=False,
        description="How long a worker keeps retrying Redis while a job runs before the job fails.")

    # ---- observe mode (curve sessions)
    curve_ttl_s: float = Field(DEFAULT_CURVE_TTL_S, gt=0, allow_inf_nan=False,
                               description="Sessions expire this long after their last change.")
    curve_cache_size: int = Field(DEFAULT_CURVE_CACHE_SIZE, ge=0,
                                  description="Session policies kept per API process; 0 rebuilds on every post.")
    curve_cache_points: int = Field(DEFAULT_CURVE_CACHE_POINTS, ge=0,
                                    description="Points the kept session policies may hold in all.")
    curve_max_points: int = Field(DEFAULT_CURVE_MAX_POINTS, ge=1, description="Most points one session may hold.")

    @model_validator(mode="after")
    def _tokens_when_required(self) -> "Settings":
        if self.require_tokens and not self.api_tokens:
            raise ValueError("PENG4NN_REQUIRE_TOKENS is on but PENG4NN_API_TOKENS is empty: set one or more "
                             "tokens, or set PENG4NN_REQUIRE_TOKENS=false to serve without access control")
        return self

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value):
        if isinstance(value, str):
            return frozenset(t.strip() for t in value.split(",") if t.strip())
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
