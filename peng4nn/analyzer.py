"""The prediction analyzer (Algorithm 2): decides, point by point, when a model's prediction is stable.

`PredictionAnalyzer` is the one implementation of the paper's convergence rule. The
trainer, the worker, the observe endpoint and replay all feed it validation points through
`observe()` and act on the returned `Decision`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from peng4nn import defaults
from peng4nn.curve import CurveFit, PrefixFitCache, fit_curve, get_backend

#: Percentage points above chance accuracy still counted as "never learned".
NEVER_LEARN_MARGIN = 1.0

#: Tolerance when comparing epochs (half-epoch steps accumulate float error).
EPOCH_TOLERANCE = 1e-9

#: Largest e_max, E and L a setting may name (a service lowers e_max further per job).
MAX_EPOCHS = 10_000.0

#: Smallest E: the trainer resolves an iteration to 1/1000 of an epoch.
MIN_E = 0.001


class EstimatorSettings(BaseModel):
    """Parameters of Algorithm 2, named by the paper's symbols (Table II).

    Every number must be finite and within bounds no real search needs to exceed (MAX_EPOCHS
    and the ``le=`` limits below, docs/SECURITY.md): a setting that passes here can be run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    N: int = Field(defaults.N, ge=1, le=1000, description="Number of most recent predictions that must agree.")
    E: float = Field(defaults.E, ge=MIN_E, le=MAX_EPOCHS, description="Epochs trained per iteration.")
    e_max: float = Field(defaults.E_MAX, gt=0, le=MAX_EPOCHS, description="Maximum epochs a model trains.")
    t: float = Field(defaults.T, ge=0, le=100, description="Allowed spread of the last N predictions around their centre (points).")
    loss_check: bool = Field(False, description="The paper's LOSS flag: for never-learn predictions, require a stalled validation loss.")
    L: float = Field(defaults.L, gt=0, le=MAX_EPOCHS, description="Epochs over which the minimum validation loss must not have decreased.")
    c_min: int = Field(defaults.C_MIN, ge=3, le=1000, description="Fewest points a curve is fitted on.")
    never_learn: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Predictions at or below this accuracy are never-learn; default chance (100/num_classes) + 1.",
    )
    window: Literal["mean", "median"] = Field("mean", description="Centre of the last N predictions: the paper's mean or the reference code's median.")

    @model_validator(mode="after")
    def _e_max_holds_an_iteration(self) -> "EstimatorSettings":
        if self.e_max < self.E:
            raise ValueError(f"e_max must be at least E ({self.E}); got {self.e_max}")
        return self

    def never_learn_threshold(self, num_classes: int | None) -> float:
        if self.never_learn is not None:
            return self.never_learn
        classes = num_classes or 10
        return 100.0 / classes + NEVER_LEARN_MARGIN


class Reason(str, Enum):
    """Why a decision says what it says."""

    TOO_FEW_POINTS = "too_few_points"
    FIT_FAILED = "fit_failed"
    WARMING_UP = "warming_up"
    ABOVE_100 = "prediction_above_100"
    UNSTABLE = "unstable"
    LOSS_DECREASING = "loss_still_decreasing"
    CONVERGED = "converged"
    MAX_EPOCHS = "max_epochs"
    PATIENCE_EXHAUSTED = "patience_exhausted"
    BUDGET_REACHED = "budget_reached"
    CURVE_ENDED = "curve_ended"
    DIVERGED = "diverged"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"
    #: Ranking-aware policies: the model cannot reach the population's top fraction.
    OUT_OF_CONTENTION = "out_of_contention"
    #: Ranking-aware policies: trained to e_max whatever it shows, as one of its search's references.
    REFERENCE = "reference"


@dataclass(frozen=True)
class Decision:
    """What the engine says after one validation point.

    The one declaration of a decision: the API's and the SDK's wire models are derived from these
    fields and their descriptions (`peng4nn.jobs.DecisionPublic`, `IterationPublic`)."""

    epoch: float = field(metadata={"description": "Epochs trained when the decision was made."})
    prediction: float | None = field(metadata={"description": "Asymptote a of the latest fit, when a fit was made."})
    a: float | None = field(metadata={"description": "Fitted a of f(x) = a - b^(c - x) (the predicted final accuracy)."})
    b: float | None = field(metadata={"description": "Fitted b."})
    c: float | None = field(metadata={"description": "Fitted c."})
    converged: bool = field(metadata={"description": "The prediction is stable (Algorithm 2)."})
    stop: bool = field(metadata={"description": "Training should stop now; stays true once given."})
    estimate: float | None = field(
        metadata={"description": "Predicted final accuracy (percent) when stop is true (at e_max: the best seen)."})
    reason: Reason = field(metadata={"description": "Why the decision says what it says."})
    interval: tuple[float, float] | None = field(
        default=None, metadata={"description": "[lo, hi] of the estimate, when the policy gives one (adaptive)."})

    def to_dict(self) -> dict:
        # A flat copy (every field but `interval` is a scalar): `asdict`'s deep copy was ~4% of an observe post.
        d = {name: getattr(self, name) for name in _DECISION_FIELDS}
        d["reason"] = self.reason.value
        d["interval"] = list(self.interval) if self.interval is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Decision":
        """The inverse of `to_dict` (a decision read back from the API or Redis)."""
        values = {name: data.get(name) for name in _DECISION_FIELDS}
        values["reason"] = Reason(values["reason"])
        values["interval"] = tuple(values["interval"]) if values["interval"] is not None else None
        return cls(**values)


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))


@dataclass
class CurvePoint:
    epoch: float
    val_acc: float
    val_loss: float | None = None
    train_loss: float | None = None
    #: The learning rate in force while training towards this point (None: not reported).
    lr: float | None = None


def check_point(epoch: float, val_acc: float, last_epoch: float | None, lr: float | None = None) -> None:
    """Reject a point no curve can contain; the message names the field and the value."""
    if not math.isfinite(epoch) or epoch <= 0:
        raise ValueError(f"epoch must be a positive finite number; got {epoch!r}")
    if last_epoch is not None and epoch <= last_epoch + EPOCH_TOLERANCE:
        raise ValueError(f"epoch must increase; got {epoch!r} after {last_epoch!r}")
    if not math.isfinite(val_acc) or not 0.0 <= val_acc <= 100.0:
        raise ValueError(f"val_acc must be a percentage in [0, 100]; got {val_acc!r}")
    if lr is not None and (not math.isfinite(lr) or lr < 0):
        raise ValueError(f"lr must be a non-negative finite number; got {lr!r}")


@dataclass
class CurveHistory:
    """The history H of one model: its points and the prediction made at each."""

    points: list[CurvePoint] = field(default_factory=list)
    predictions: list[float | None] = field(default_factory=list)

    @property
    def last_epoch(self) -> float | None:
        return self.points[-1].epoch if self.points else None

    def append(self, point: CurvePoint) -> None:
        check_point(point.epoch, point.val_acc, self.last_epoch, point.lr)
        self.points.append(point)
        self.predictions.append(None)

    def epochs(self) -> np.ndarray:
        return np.fromiter((p.epoch for p in self.points), float, len(self.points))

    def accuracies(self) -> np.ndarray:
        return np.fromiter((p.val_acc for p in self.points), float, len(self.points))

    def best_accuracy(self) -> float:
        return max(p.val_acc for p in self.points)


class StoppingPolicy(ABC):
    """One model's stopping rule: feed it validation points, act on its decisions.

    Subclasses implement `_decide`; this base owns the history, the input checks and the
    latch that keeps the first stopping answer once given.
    """

    name: str = "policy"

    def __init__(self, *, E: float, e_max: float):
        self._E = E
        self._e_max = e_max
        self.history = CurveHistory()
        self.final: Decision | None = None
        #: The learning-rate schedule this network trains with, when known in advance (peng4nn.schedule);
        #: schedule-aware policies read upcoming drops from it. Rates reported with `observe(lr=...)` add to it.
        self.schedule = None
        #: What the NAS knows about this network (peng4nn.network_info.NetworkInfo), when given.
        self.network = None

    def accepts_known_fits(self, n_points: int) -> bool:
        """Whether a fit of its first ``n_points`` points made elsewhere (a batch of several curves, a
        curve's prefixes fitted at once) would stand in for its own: see `known_fits`. The base: never."""
        return False

    @contextmanager
    def known_fits(self, fits) -> Iterator[None]:
        """Within the block, decisions use ``fits.lookup(epochs, accuracies)`` (an exact fit of exactly
        those points, or None) before fitting themselves; the decisions are the same, only cheaper.
        A policy that does not fit curves ignores it."""
        yield

    @property
    def E(self) -> float:
        return self._E

    @property
    def e_max(self) -> float:
        return self._e_max

    def observe(
        self,
        epoch: float,
        val_acc: float,
        val_loss: float | None = None,
        train_loss: float | None = None,
        lr: float | None = None,
    ) -> Decision:
        """Add one validation point (with the learning rate that produced it, when known) and say whether
        training should stop."""
        self._check_losses(val_loss, train_loss)
        self.history.append(CurvePoint(float(epoch), float(val_acc), val_loss, train_loss,
                                       None if lr is None else float(lr)))
        decision = self._decide(float(epoch))
        if decision.stop and self.final is None:
            self.final = decision
        elif self.final is not None:
            decision = _latched(decision, self.final)
        return decision

    def finish(self) -> None:
        """Called once when the model's training ends (stopped, e_max, curve over or failed).

        Population-aware policies use it to record the model's outcome; the default does nothing.
        """

    def _check_losses(self, val_loss: float | None, train_loss: float | None) -> None:
        """Hook for policies that need a loss; the default needs none."""

    @abstractmethod
    def _decide(self, epoch: float) -> Decision:
        """The decision after the point at `epoch`, already appended to the history."""


class PredictionAnalyzer(StoppingPolicy):
    """Algorithm 2 on top of Algorithm 1, as published: the `paper` policy."""

    name = "paper"

    def __init__(
        self,
        settings: EstimatorSettings | dict | None = None,
        *,
        num_classes: int | None = None,
        backend: str = defaults.BACKEND,
        fit_cache: PrefixFitCache | None = None,
    ):
        """`fit_cache`: fits of a curve known in advance (replay); used only for the points seen so far."""
        if isinstance(settings, dict):
            settings = EstimatorSettings(**settings)
        self.settings = settings or EstimatorSettings()
        super().__init__(E=self.settings.E, e_max=self.settings.e_max)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        get_backend(backend)  # validate early
        self.backend = backend
        self.num_classes = num_classes
        self.never_learn = self.settings.never_learn_threshold(num_classes)
        self.last_fit: CurveFit | None = None
        if fit_cache is not None and fit_cache.backend != backend:
            raise ValueError(f"fit_cache was built with backend {fit_cache.backend!r}, the analyzer uses {backend!r}")
        self.fit_cache = fit_cache

    def accepts_known_fits(self, n_points: int) -> bool:
        return self.backend == "fast" and self.fit_cache is None and n_points >= self.settings.c_min

    @contextmanager
    def known_fits(self, fits) -> Iterator[None]:
        if fits.backend != self.backend or self.fit_cache is not None:  # not ours to use, or one is in place
            yield
            return
        self.fit_cache = fits
        try:
            yield
        finally:
            if self.fit_cache is fits:
                self.fit_cache = None

    def _check_losses(self, val_loss: float | None, train_loss: float | None) -> None:
        if self.settings.loss_check and (val_loss is None or not math.isfinite(val_loss)):
            raise ValueError(f"val_loss must be a finite number when loss_check is on; got {val_loss!r}")

    def _decide(self, epoch: float) -> Decision:
        prediction, fit, reason = self._predict()
        return self._analyze(epoch, prediction, fit, reason)

    def _predict(self) -> tuple[float | None, CurveFit | None, Reason | None]:
        h = self.history
        if len(h.points) < self.settings.c_min:
            return None, None, Reason.TOO_FEW_POINTS
        epochs, accuracies = h.epochs(), h.accuracies()
        fit = self.fit_cache.lookup(epochs, accuracies) if self.fit_cache is not None else None
        if fit is None:
            fit = fit_curve(epochs, accuracies, self.backend)
        if not fit.ok:
            return None, None, Reason.FIT_FAILED
        h.predictions[-1] = fit.a
        self.last_fit = fit
        return fit.a, fit, None

    def _analyze(self, e: float, prediction: float | None, fit: CurveFit | None, pending: Reason | None) -> Decision:
        s = self.settings

        def decide(reason: Reason, *, converged=False, stop=False, estimate=None) -> Decision:
            return Decision(
                epoch=e,
                prediction=prediction,
                a=fit.a if fit else None,
                b=fit.b if fit else None,
                c=fit.c if fit else None,
                converged=converged,
                stop=stop,
                estimate=estimate,
                reason=reason,
            )

        if e <= s.N * s.E + EPOCH_TOLERANCE:  # line 3
            return decide(pending or Reason.WARMING_UP)
        if e >= s.e_max - EPOCH_TOLERANCE:  # line 4
            return decide(Reason.MAX_EPOCHS, stop=True, estimate=self.history.best_accuracy())
        if prediction is None:
            return decide(pending or Reason.FIT_FAILED)
        if prediction > 100.0:  # line 6, condition 1
            return decide(Reason.ABOVE_100)
        if not self._recent_predictions_agree():  # line 7, condition 2
            return decide(Reason.UNSTABLE)
        if s.loss_check and prediction <= self.never_learn and not self._loss_stalled(e):  # lines 8-10
            return decide(Reason.LOSS_DECREASING)
        return decide(Reason.CONVERGED, converged=True, stop=True, estimate=prediction)

    def _recent_predictions_agree(self) -> bool:
        """Condition 2: the last N predictions lie within t of their mean (or median)."""
        n = self.settings.N
        recent = self.history.predictions[-n:]
        if len(recent) < n or any(p is None for p in recent):
            return False
        centre = float(np.median(recent)) if self.settings.window == "median" else sum(recent) / n
        return all(abs(p - centre) <= self.settings.t + 1e-12 for p in recent)

    def _loss_stalled(self, e: float) -> bool:
        """Condition 3: the minimum validation loss has not decreased during the last L epochs."""
        window_start = e - self.settings.L
        before = [p.val_loss for p in self.history.points if p.epoch <= window_start + EPOCH_TOLERANCE]
        if not before:
            return False  # not yet L epochs of history: cannot tell
        recent = [p.val_loss for p in self.history.points if p.epoch > window_start + EPOCH_TOLERANCE]
        return min(recent) >= min(before)


def _latched(decision: Decision, final: Decision) -> Decision:
    """After the first stop the answer stays; only the fresh fit is reported alongside it."""
    return Decision(
        epoch=decision.epoch,
        prediction=decision.prediction,
        a=decision.a,
        b=decision.b,
        c=decision.c,
        converged=final.converged,
        stop=True,
        estimate=final.estimate,
        reason=final.reason,
        interval=final.interval,
    )
