"""Wire models of observe mode: curve sessions the caller trains itself and reports point by point.

Pure pydantic. The request reuses the library's `EstimatorSettings` as it is, and a
decision is `peng4nn.jobs.DecisionPublic`, derived from the library's `Decision`, so what the
API answers is what `StoppingPolicy.observe()` returned.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from peng4nn.analyzer import EstimatorSettings
from peng4nn.jobs import DecisionPublic, search_field
from peng4nn.network_info import NetworkInfo
from peng4nn.policies import DEFAULT_LONE_POLICY, default_policy, require_search
from peng4nn.schedule import LRSchedule

#: Most points one POST may carry (a whole e_max=20, E=0.5 curve is 40).
MAX_POINTS_PER_POST = 1000


class CurveCreate(BaseModel):
    """Open an observation session; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    estimator: EstimatorSettings | None = Field(
        None, description="Estimator settings (paper symbols); defaults if omitted."
    )
    num_classes: int | None = Field(
        None, ge=2, le=1_000_000, description="Classes of the task: sets the never-learn threshold."
    )
    label: str | None = Field(None, max_length=256, description="Free text shown back with the session.")
    policy: str | None = Field(
        None, min_length=1, max_length=32,
        description="Stopping policy: paper, menndl, patience, fixed or adaptive. Default: adaptive when search is "
        "given (the network is ranked against its search), else paper.",
    )
    policy_params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Extra keyword arguments of the policy (e.g. top for adaptive)."
    )
    search: str | None = search_field()

    schedule: LRSchedule | None = Field(
        None, description="The learning-rate schedule this network trains with, when known in advance: the "
        "estimator sees its drops coming. Milestones and warm-up must end before the estimator's e_max.",
    )
    network: NetworkInfo | None = Field(
        None, description="What the search knows about the network (size, depth, initial rate); population-learned "
        "policies use it.",
    )

    @field_validator("search")
    @classmethod
    def _search_for_search_policies(cls, value: str | None, info: ValidationInfo) -> str | None:
        require_search(info.data.get("policy"), value, "search")
        return value

    @model_validator(mode="after")
    def _default_policy(self) -> "CurveCreate":
        if self.policy is None:
            self.policy = default_policy(self.search is not None)
        return self


class CurveCreated(BaseModel):
    id: str
    expires_in_s: float = Field(description="The session expires this long after its last change.")


MIN_EPOCH = 1e-6
"""Smallest epoch a point may have: the fit rescales epochs by the first one, so together with
`MAX_EPOCH` this bounds the rescaled range (1e12) where the fit is exact and cannot overflow."""

MAX_EPOCH = 1e6
"""Largest epoch a point may have (no real training reports a million epochs)."""


class ObservationPoint(BaseModel):
    """One validation point of the caller's own training."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epoch: float = Field(ge=MIN_EPOCH, le=MAX_EPOCH, strict=True,
                         description="Epochs trained so far; must increase from point to point.")
    val_acc: float = Field(ge=0, le=100, strict=True, description="Validation accuracy in percent.")
    val_loss: float | None = Field(None, strict=True,
                                   description="Validation loss (needed when the estimator's loss_check is on).")
    train_loss: float | None = Field(None, strict=True, description="Training loss.")
    lr: float | None = Field(None, ge=0, strict=True,
                             description="Learning rate in force while training towards this point, when known.")


class ObservationsCreate(BaseModel):
    """Points appended to a session, in order."""

    model_config = ConfigDict(extra="forbid")

    points: list[ObservationPoint] = Field(min_length=1, max_length=MAX_POINTS_PER_POST)


class ObservationResult(DecisionPublic):
    """The decision after the last posted point, and how many points the session holds."""

    n_points: int


class CurvePointPublic(BaseModel):
    epoch: float
    val_acc: float
    val_loss: float | None = None
    train_loss: float | None = None
    lr: float | None = None
    decision: DecisionPublic


class CurvePublic(BaseModel):
    """A session: its settings, every point with the decision made after it, and the first stop."""

    id: str
    label: str | None = None
    num_classes: int | None = None
    estimator: EstimatorSettings
    policy: str = DEFAULT_LONE_POLICY
    policy_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    search: str | None = None
    schedule: LRSchedule | None = None
    network: NetworkInfo | None = None
    created_at: datetime
    expires_in_s: float | None = Field(description="Seconds until the session expires unless it changes.")
    n_points: int
    points: list[CurvePointPublic]
    latest: DecisionPublic | None = Field(description="The decision after the last point.")
    final: DecisionPublic | None = Field(description="The first decision that said stop.")
