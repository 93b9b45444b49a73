"""Wire models of the job API, shared by the service, the worker and the client SDK.

Pure pydantic (no fastapi, redis or torch) so that ``peng4nn.client`` returns the
same typed objects the service validates and serves. The request reuses the
library's own models as they are: ``ArchSpec`` for the network and
``EstimatorSettings`` for the estimator overrides. What the engine answers is not
declared again here: `DecisionPublic`, `IterationPublic` and `ResultPublic` are derived
from the engine's `Decision`, `IterationEvent` and `TrainResult` (`wire_model`).
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

from peng4nn.analyzer import Decision, EstimatorSettings
from peng4nn.policies import default_policy, require_search
from peng4nn.results import IterationEvent, TrainResult
from peng4nn.spec import ArchSpec


class JobStatus(str, Enum):
    """Where a job is in its life; the last four are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    CONVERGED = "converged"
    """Training ended and the engine converged: the result carries an estimate."""
    COMPLETED = "completed"
    """Training ran to its epoch budget without the engine converging."""
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.CONVERGED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

#: Event types on a job's stream, in the order a job produces them.
EVENT_STATUS = "status"
EVENT_ITERATION = "iteration"
EVENT_RESULT = "result"
EVENT_TYPES = (EVENT_STATUS, EVENT_ITERATION, EVENT_RESULT)


SEARCH_MAX_LENGTH = 128
"""Longest search name (it becomes part of a Redis key)."""


def search_field() -> Any:
    """The ``search`` field of jobs and curve sessions alike: the same name and rule on both."""
    return Field(
        None, min_length=1, max_length=SEARCH_MAX_LENGTH, validate_default=True,
        description="The search this network belongs to (any name its networks share, per API token): the adaptive "
        "policy ranks the network against the search's other networks, jobs and curve sessions alike, learning "
        "from each one that has finished. Required with policy adaptive.",
    )


def renamed_search(data: Any) -> Any:
    """A job's ``search_id`` (the old name of ``search``, deprecated) read as ``search``; both at once is refused."""
    if not isinstance(data, dict) or data.get("search_id") is None:
        return data
    if data.get("search") is not None and data["search"] != data["search_id"]:
        raise ValueError("give search (search_id is its deprecated old name), not both")
    data = dict(data)
    data["search"] = data.pop("search_id")
    return data


class JobCreate(BaseModel):
    """One network to train and estimate."""

    model_config = ConfigDict(extra="forbid")

    architecture: ArchSpec = Field(description="The network and its training settings (peng4nn.arch/v1).")
    dataset: str = Field(min_length=1, max_length=64, description="A name from GET /v1/datasets.")
    policy: str | None = Field(
        None, min_length=1, max_length=32,
        description="Stopping policy: paper, menndl, patience, fixed or adaptive. Default: adaptive when search "
        "is given (the job is ranked against its search), else paper.",
    )
    policy_params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Extra keyword arguments of the policy (e.g. patience)."
    )
    estimator: EstimatorSettings | None = Field(None, description="Overrides of the estimator settings (paper symbols).")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Overrides architecture.training.seed.")
    shadow: bool = Field(False, description="Train to e_max anyway, recording where the engine would have stopped.")
    search: str | None = search_field()
    search_id: str | None = Field(
        None, min_length=1, max_length=SEARCH_MAX_LENGTH, exclude=True, deprecated=True,
        description="Deprecated: the old name of search (still accepted; give one or the other).")
    label: str | None = Field(None, max_length=256, description="Free text shown back with the job.")

    @model_validator(mode="before")
    @classmethod
    def _old_search_name(cls, data: Any) -> Any:
        return renamed_search(data)

    @field_validator("search")
    @classmethod
    def _search_for_search_policies(cls, value: str | None, info: ValidationInfo) -> str | None:
        require_search(info.data.get("policy"), value, "search")
        return value

    @model_validator(mode="after")
    def _default_policy(self) -> "JobCreate":
        if self.policy is None:
            self.policy = default_policy(self.search is not None)
        return self


class JobBatchCreate(BaseModel):
    """A whole NAS generation: validated all-or-nothing, one job per entry, in order."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobCreate] = Field(min_length=1)


class JobLinks(BaseModel):
    self: str
    events: str
    result: str


class JobAccepted(BaseModel):
    """Answer to a submission: the job exists and is queued."""

    id: str
    status: JobStatus
    created_at: datetime
    params: int = Field(description="Trainable parameters of the network.")
    flops: int = Field(description="Forward FLOPs per sample.")
    links: JobLinks


class JobsAccepted(BaseModel):
    data: list[JobAccepted]
    count: int


def wire_model(name: str, doc: str, *sources: type, lenient: bool = False, **config: Any) -> type[BaseModel]:
    """A pydantic model with the fields of the dataclasses ``sources`` (in order; a field whose metadata says
    ``wire: False``, or that holds another source, is left out), their types and descriptions.

    ``lenient``: every field may be missing (a partial event from an older worker still reads)."""
    definitions: dict[str, Any] = {}
    for source in sources:
        hints = typing.get_type_hints(source)
        for f in dataclasses.fields(source):
            if f.metadata.get("wire", True) is False or hints[f.name] in sources or f.name in definitions:
                continue
            annotation = hints[f.name]
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif lenient:
                default = False if annotation is bool else None
                annotation = annotation if annotation is bool else annotation | None
            else:
                default = ...
            definitions[f.name] = (annotation, Field(default, description=f.metadata.get("description")))
    return create_model(name, __doc__=doc, __config__=ConfigDict(**config) if config else None, **definitions)


DecisionPublic = wire_model("DecisionPublic", "The engine's answer after a point (the library's `Decision`).",
                            Decision)

IterationPublic = wire_model(
    "IterationPublic", "One training iteration (E epochs) and the engine's decision after it.",
    IterationEvent, Decision, lenient=True, extra="allow")

ResultPublic = wire_model("ResultPublic", "What training ended with (the trainer's `TrainResult`).", TrainResult,
                          lenient=True, extra="allow")


class StatusEventData(BaseModel):
    """Payload of a ``status`` event."""

    status: JobStatus
    at: datetime
    reason: str | None = None
    attempt: int = 0


class ResultEventData(BaseModel):
    """Payload of the final ``result`` event: the terminal status with the result or the failure."""

    status: JobStatus
    result: ResultPublic | None = None
    error: str | None = None


class JobPublic(BaseModel):
    """A job as the API shows it; status and stream always agree (one write path)."""

    id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    dataset: str
    policy: str
    shadow: bool = False
    seed: int | None = None
    search: str | None = None
    search_id: str | None = Field(None, deprecated=True, description="Deprecated: the same as search (its old name).")
    label: str | None = None
    params: int | None = None
    flops: int | None = None
    iterations: int = Field(0, description="Iterations reported so far.")
    latest: IterationPublic | None = Field(None, description="The latest iteration and its prediction.")
    result: ResultPublic | None = None
    error: str | None = Field(None, description="Why the job failed, or why it was cancelled or re-queued.")
    attempts: int = Field(0, description="Times a worker started this job.")
    cancel_requested: bool = False
    last_event_id: str | None = Field(None, description="Id of the newest event on the job's stream.")
    links: JobLinks


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="Jobs matching the filter, over all pages.")


class JobEvent(BaseModel):
    """One event of a job's stream as the client SDK yields it."""

    id: str
    event: str
    data: Any

    @property
    def typed(self) -> IterationPublic | StatusEventData | ResultEventData | Any:
        """The payload as its model (by event type)."""
        if self.event == EVENT_ITERATION:
            return IterationPublic.model_validate(self.data)
        if self.event == EVENT_STATUS:
            return StatusEventData.model_validate(self.data)
        if self.event == EVENT_RESULT:
            return ResultEventData.model_validate(self.data)
        return self.data


class DatasetPublic(BaseModel):
    name: str
    input_shape: list[int]
    num_classes: int
    description: str = ""


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


def job_links(job_id: str, base: str = "/v1/jobs") -> JobLinks:
    """The three URLs of a job (relative to the server)."""
    return JobLinks(self=f"{base}/{job_id}", events=f"{base}/{job_id}/events", result=f"{base}/{job_id}/result")
