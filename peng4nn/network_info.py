"""What a NAS knows about a network before training it: size, depth, initial learning rate.

Optional input of every estimator (sessions, replay side files, jobs derive it from the spec).
Networks of one search that differ in size or rate learn differently, and a population-learned
predictor can use that (Baker et al. 2018 used the same features).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NetworkInfo"]


class NetworkInfo(BaseModel):
    """Per-network metadata; every field optional, unknown ones stay None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_params: float | None = Field(None, gt=0, le=1e13, allow_inf_nan=False, description="Trainable parameters.")
    depth: float | None = Field(None, ge=0, le=1e5, allow_inf_nan=False, description="Weight layers (conv + linear).")
    initial_lr: float | None = Field(None, gt=0, le=1e3, allow_inf_nan=False, description="Learning rate at the start.")

    def features(self) -> tuple[float | None, float | None, float | None]:
        """log10 parameters, depth, log10 initial rate: the scale a regression wants."""
        return (
            math.log10(self.num_params) if self.num_params is not None else None,
            self.depth,
            math.log10(self.initial_lr) if self.initial_lr is not None else None,
        )
