"""Learning-rate schedules: what the trainer applies and what estimators read to know when the rate drops.

Real NAS training rarely keeps one rate: step schedules multiply it by gamma at milestones,
cosine anneals it, and warm-up ramps it in. A validation curve jumps after a drop, so an
estimator that knows a drop is coming must not call the curve converged just before it.

Epochs follow the engine's convention: the point at epoch e was validated after training up to
e, so a drop at milestone m affects every point with e > m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DROP_RATIO", "BoundSchedule", "LRSchedule", "RateSchedule", "TabulatedSchedule", "drop_epochs", "parse_schedule",
    "schedule_from_rates",
]

#: A fall of the rate to at most this fraction of its previous value counts as a drop (a step of a
#: step schedule; cosine's continuous decay never does between two half-epoch points).
DROP_RATIO = 0.7

#: Tolerance when comparing epochs.
_TOL = 1e-9


class RateSchedule(Protocol):
    """Anything that tells the learning rate in force when training reaches `epoch` (or a fixed multiple
    of it: estimators only compare rates of one network)."""

    def rate_at(self, epoch: float) -> float: ...


class LRSchedule(BaseModel):
    """A learning-rate schedule as a NAS specifies it (the trainer applies it; estimators read it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "step", "cosine"] = Field(
        "constant", description="constant; step (multiply by gamma after each milestone); cosine (anneal to min_factor of the peak)."
    )
    milestones: tuple[float, ...] = Field(
        (), description="step: epochs after which the rate is multiplied by gamma, strictly increasing."
    )
    gamma: float = Field(0.1, gt=0, lt=1, allow_inf_nan=False, description="step: the factor applied at each milestone.")
    warmup_epochs: float = Field(0.0, ge=0, le=1e4, allow_inf_nan=False,
                                 description="Linear warm-up from near 0 to the peak rate over these epochs (0: none).")
    min_factor: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False,
                              description="cosine: the fraction of the peak rate reached at total_epochs.")
    total_epochs: float | None = Field(
        None, gt=0, le=1e6, allow_inf_nan=False, description="cosine: epochs of the annealing (default: the run's e_max)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "LRSchedule":
        ms = self.milestones
        for i, m in enumerate(ms):
            if not math.isfinite(m) or m <= 0:
                raise ValueError(f"milestones[{i}] must be a positive finite epoch; got {m!r}")
            if i and m <= ms[i - 1]:
                raise ValueError(f"milestones must be strictly increasing; milestones[{i}] = {m!r} "
                                 f"follows {ms[i - 1]!r}")
        if self.kind != "step" and ms:
            raise ValueError(f"milestones only apply to kind 'step'; got kind {self.kind!r}")
        if self.kind != "cosine" and self.min_factor:
            raise ValueError(f"min_factor only applies to kind 'cosine'; got kind {self.kind!r}")
        return self

    def check_within(self, e_max: float) -> None:
        """Milestones beyond the run are a mistake, not a no-op: say which one."""
        for i, m in enumerate(self.milestones):
            if m >= e_max - _TOL:
                raise ValueError(f"milestones[{i}] = {m!r} is not before e_max ({e_max!r})")
        if self.warmup_epochs >= e_max:
            raise ValueError(f"warmup_epochs must be below e_max ({e_max!r}); got {self.warmup_epochs!r}")

    def factor_at(self, epoch: float, e_max: float | None = None) -> float:
        """The rate in force while training towards `epoch`, as a fraction of the peak rate (the trainer
        multiplies the optimizer's lr by it; estimators only need ratios)."""
        s = max(float(epoch), 0.0)
        if self.warmup_epochs > 0 and s < self.warmup_epochs - _TOL:
            return max(s / self.warmup_epochs, 1e-3)
        if self.kind == "step":
            drops = sum(1 for m in self.milestones if m < s - _TOL)
            return self.gamma**drops
        if self.kind == "cosine":
            total = self.total_epochs or e_max
            if total is None:
                raise ValueError("a cosine schedule needs total_epochs or the run's e_max")
            span = max(total - self.warmup_epochs, _TOL)
            progress = min(max((s - self.warmup_epochs) / span, 0.0), 1.0)
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    def bound(self, e_max: float) -> "BoundSchedule":
        """This schedule for a run of `e_max` epochs (cosine needs the length)."""
        self.check_within(e_max)
        return BoundSchedule(self, e_max)


class BoundSchedule:
    """An `LRSchedule` fixed to one run length, usable wherever a `RateSchedule` is."""

    def __init__(self, schedule: LRSchedule, e_max: float):
        self.schedule = schedule
        self.e_max = e_max

    def rate_at(self, epoch: float) -> float:
        return self.schedule.factor_at(epoch, self.e_max)


class TabulatedSchedule:
    """A schedule known as the rate at each recorded point (replay's `lr` column, observed rates)."""

    def __init__(self, epochs: Sequence[float], rates: Sequence[float]):
        if len(epochs) != len(rates) or not len(epochs):
            raise ValueError("a tabulated schedule needs one rate per epoch, and at least one")
        self.epochs = [float(e) for e in epochs]
        self.rates = [float(r) for r in rates]

    def rate_at(self, epoch: float) -> float:
        """The rate of the first recorded point at or after `epoch` (the last one beyond the table)."""
        for e, r in zip(self.epochs, self.rates):
            if e >= epoch - _TOL:
                return r
        return self.rates[-1]


def schedule_from_rates(epochs: Sequence[float], rates: Sequence[float | None]) -> TabulatedSchedule | None:
    """A tabulated schedule from per-point rates, or None when no rate was given."""
    pairs = [(e, r) for e, r in zip(epochs, rates) if r is not None]
    if not pairs:
        return None
    return TabulatedSchedule([e for e, _ in pairs], [r for _, r in pairs])


def drop_epochs(schedule: RateSchedule, E: float, e_max: float, *, after: float = 0.0) -> list[float]:
    """Epochs m in [after, e_max) after which the rate falls to at most DROP_RATIO of its value at m.

    Points are E apart, so a drop is seen as the rate of point m + E against point m.
    """
    out = []
    k = max(int(math.floor(after / E + _TOL)), 1)
    while k * E < e_max - _TOL:
        m = k * E
        before, after_rate = schedule.rate_at(m), schedule.rate_at(m + E)
        if before > 0 and after_rate <= DROP_RATIO * before:
            out.append(m)
        k += 1
    return out


def parse_schedule(text: str) -> LRSchedule:
    """A schedule from the command line: JSON (`{"kind": "step", "milestones": [5, 10], "gamma": 0.2}`) or
    the short forms `constant`, `step:5,10,15:0.2`, `cosine`, `cosine:0.01`, each optionally followed by
    `+warmup=2`. Raises ValueError naming what is wrong."""
    import json

    from pydantic import ValidationError

    text = text.strip()
    try:
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON at column {exc.colno}: {exc.msg}") from None
            if not isinstance(data, dict):
                raise ValueError("a JSON schedule must be an object")
            return LRSchedule(**data)
        main, _, extra = text.partition("+")
        data: dict = {}
        if extra:
            key, _, value = extra.partition("=")
            if key.strip() != "warmup" or not value:
                raise ValueError(f"unknown addition {extra!r}; the only one is +warmup=EPOCHS")
            data["warmup_epochs"] = _number(value, "warmup")
        kind, *parts = main.split(":")
        data["kind"] = kind.strip()
        if data["kind"] == "step":
            if not parts or not parts[0].strip():
                raise ValueError("a step schedule needs its milestones, e.g. step:5,10,15:0.2")
            data["milestones"] = tuple(_number(m, "milestone") for m in parts[0].split(","))
            if len(parts) > 1:
                data["gamma"] = _number(parts[1], "gamma")
            if len(parts) > 2:
                raise ValueError("step takes milestones and gamma only: step:5,10,15:0.2")
        elif data["kind"] == "cosine":
            if parts:
                data["min_factor"] = _number(parts[0], "min_factor")
            if len(parts) > 1:
                raise ValueError("cosine takes one optional min_factor: cosine:0.01")
        elif parts:
            raise ValueError(f"{data['kind']!r} takes no parameters")
        return LRSchedule(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {msg}" if where else msg) from None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number; got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite; got {text.strip()!r}")
    return value
