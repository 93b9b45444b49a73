"""An Optuna pruner driven by PEng4NN: a trial is pruned once the engine has converged on its curve.

Each trial's intermediate values are its validation curve: ``trial.report(val_acc, step)``
with step k (counted from 0) the validation after ``(k + 1) * epochs_per_step`` epochs.
When the engine converges, `prune()` answers True and records the predicted final
accuracy as the trial's user attribute ``peng4nn_estimate`` (and why, as
``peng4nn_reason``). The objective can then raise ``optuna.TrialPruned`` or return
`estimate_of(trial)` to score the trial by its predicted accuracy.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from peng4nn.analyzer import EstimatorSettings
from peng4nn.integrations import ESTIMATE_ATTR, REASON_ATTR, CurveObserver, open_curve

__all__ = ["PEng4NNPruner", "estimate_of"]


@dataclass
class _TrialCurve:
    """One trial's observer, the steps fed to it, and whether its stop was recorded."""

    curve: CurveObserver
    fed: list[int] = field(default_factory=list)
    recorded: bool = False


class PEng4NNPruner(BasePruner):
    """Prune a trial when PEng4NN predicts its final accuracy with confidence.

    Args:
        estimator: the engine's settings (paper symbols); defaults if omitted.
        num_classes: classes of the task (sets the never-learn threshold).
        epochs_per_step: epochs between two reported steps; default the estimator's E.
        value_scale: multiplies each intermediate value into percent (100 for accuracies in [0, 1]).
        client: a `peng4nn.client.Client`: decide on that service instead of in-process.
        label_prefix: remote sessions are labelled ``<prefix><trial number>``.
    """

    def __init__(
        self,
        estimator: EstimatorSettings | dict | None = None,
        *,
        num_classes: int | None = None,
        epochs_per_step: float | None = None,
        value_scale: float = 1.0,
        client: Any | None = None,
        label_prefix: str = "optuna-trial-",
    ):
        if isinstance(estimator, dict):
            estimator = EstimatorSettings(**estimator)
        self.estimator = estimator or EstimatorSettings()
        if epochs_per_step is not None and not (math.isfinite(epochs_per_step) and epochs_per_step > 0):
            raise ValueError(f"epochs_per_step must be a positive number but got {epochs_per_step!r}")
        if not (math.isfinite(value_scale) and value_scale > 0):
            raise ValueError(f"value_scale must be a positive number but got {value_scale!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 but got {num_classes!r}")
        self.num_classes = num_classes
        self.epochs_per_step = epochs_per_step or self.estimator.E
        self.value_scale = value_scale
        self.client = client
        self.label_prefix = label_prefix
        self._curves: dict[int, _TrialCurve] = {}
        self._lock = threading.Lock()

    def epoch_of_step(self, step: int) -> float:
        return (step + 1) * self.epochs_per_step

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        """Feed the trial's new intermediate values to its curve; True once the engine converged."""
        with self._lock:
            state = self._curves.get(trial.number)
        if state is None:  # only this trial's thread reaches here for this trial
            state = _TrialCurve(self._open(trial))
            with self._lock:
                self._curves[trial.number] = state
        values = trial.intermediate_values
        decision = None
        for step in sorted(s for s in values if not state.fed or s > state.fed[-1]):
            value = values[step]
            if not math.isfinite(value):
                return False  # a diverged trial: leave it to the objective, the engine cannot use it
            try:
                decision = state.curve.observe(self.epoch_of_step(step), value * self.value_scale)
            except ValueError as exc:
                raise ValueError(f"trial {trial.number}, step {step}: intermediate value {value!r} "
                                 f"(x value_scale {self.value_scale}): {exc}") from None
            state.fed.append(step)
            if decision.stop and not state.recorded:  # FrozenTrial is a copy: write to the storage
                study._storage.set_trial_user_attr(trial._trial_id, ESTIMATE_ATTR, decision.estimate)
                study._storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, decision.reason.value)
                state.recorded = True
        prune = bool(decision is not None and decision.stop and decision.converged)
        if prune:
            with self._lock:  # the trial ends here: free its curve
                self._curves.pop(trial.number, None)
        return prune

    def _open(self, trial: FrozenTrial) -> CurveObserver:
        return open_curve(self.client, estimator=self.estimator, num_classes=self.num_classes,
                          label=f"{self.label_prefix}{trial.number}")


def estimate_of(trial: optuna.trial.Trial | FrozenTrial) -> float | None:
    """The predicted final accuracy (percent) the pruner recorded on ``trial``, if any.

    Inside the objective, a live ``Trial`` shows user attributes from its own cache, which
    the pruner (given only a copy of the trial) cannot update; so this reads the storage.
    """
    if isinstance(trial, optuna.trial.Trial):
        return trial.study._storage.get_trial(trial._trial_id).user_attrs.get(ESTIMATE_ATTR)
    return trial.user_attrs.get(ESTIMATE_ATTR)

