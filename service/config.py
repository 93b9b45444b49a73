"""Service and worker settings, read once from the environment (``PENG4NN_*``, ``REDIS_URL``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated, Literal

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Used only when a process is started without REDIS_URL outside `peng4nn serve`."""


class Settings(BaseSettings):
    """Every knob of the API and the workers; each has a safe default."""

    model_config = SettingsConfigDict(env_prefix="PENG4NN_", extra="ignore", frozen=True, populate_by_name=True)

    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias=AliasChoices("REDIS_URL", "PENG4NN_REDIS_URL"))
    api_tokens: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="Comma-separated bearer tokens; empty = no access control."
    )
    queue_name: str = Field("peng4nn", description="RQ queue the API enqueues on and workers listen to.")
    job_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Job records and event streams expire this long after their last change.")
    job_timeout_s: int = Field(6 * 3600, ge=1, description="RQ job_timeout: a job running longer is failed.")
    result_ttl_s: int = Field(24 * 3600, ge=1, description="RQ result_ttl (our own record keeps the result for job_ttl_s).")
    failure_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="RQ failure_ttl.")
    requeue_on_worker_loss: int = Field(1, ge=0, le=10, description="Times a job whose worker died is re-queued before it is failed.")
    worker_lease_s: int = Field(30, ge=1, description="A running job whose worker sent no heartbeat for this long is abandoned.")
    maintenance_interval_s: float = Field(10.0, gt=0, description="How often the API and workers look for abandoned jobs.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Larger request bodies are refused with 413.")
    max_batch: int = Field(1000, ge=1, description="Most jobs in one POST /v1/jobs/batch.")
    idempotency_ttl_s: int = Field(24 * 3600, ge=60, description="How long an Idempotency-Key of POST /v1/jobs "
                                   "is remembered.")
    sse_fanout: Literal["direct", "hub"] = Field(
        "direct", description="direct: one blocking XREAD per open stream; hub: one XREAD per API process for all.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Idle streams get a keep-alive comment this often.")
    data_root: str | None = Field(None, description="Where workers keep downloaded datasets.")
    download: bool = Field(False, description="Let workers download datasets that are not on disk.")
    redis_max_connections: int = Field(4000, ge=1, description="Connection pool size per API process "
                                       "(each open event stream holds one).")

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
