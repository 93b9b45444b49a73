"""A Ray Tune stopper driven by PEng4NN, where a Tune experiment is one search.

Tune calls the stopper with every result of every trial. Each trial is one network of the search:
the default policy, ``adaptive``, ranks it against the experiment's finished trials (learned in the
order they finish) and stops it once it is out of contention or its final accuracy is known; at the
engine's e_max it stops too. The stopper writes ``peng4nn_estimate`` (and ``peng4nn_lo``/``peng4nn_hi``
when the policy gives an interval) into each result, so they reach the trial's logs and
``ResultGrid``; ``stopper.ranked()`` and ``best_trial_id()`` rank the experiment by estimate.

A trial restored from a checkpoint after a failure reports some iterations again: those are
skipped, so its curve goes on where it was. The stopper lives in Tune's driver process.

Decision: no ``TrialScheduler``. A scheduler would only add what the stopper already gets (Tune
passes the stopper a final ``done`` result when a trial ends on its own, so such trials join the
search too), and it would replace the user's scheduler instead of composing with it.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.stopper import Stopper

from peng4nn.analyzer import EstimatorSettings
from peng4nn.integrations import TrialEstimate
from peng4nn.integrations._run import MonitorMissingWarning, RunWatch
from peng4nn.policies import DEFAULT_SEARCH_POLICY, SEARCH_POLICIES, make_policy_factory

__all__ = ["MonitorMissingWarning", "PEng4NNStopper"]


class PEng4NNStopper(Stopper):
    """Stop Tune trials when PEng4NN says so, ranking each against the experiment's other trials.

    Args:
        metric: the reported metric holding the validation accuracy.
        policy: the stopping policy; default ``adaptive`` (the experiment is the search); ``paper``
            decides each trial alone.
        estimator: the engine's settings (paper symbols); e_max is the epochs a trial trains.
        num_classes: classes of the task (sets the never-learn threshold).
        value_scale: multiplies the metric into percent (100 for accuracies in [0, 1]).
        epoch_key: the reported key holding the epochs trained; default ``training_iteration`` times
            ``epochs_per_step`` (itself default the estimator's E).
        lr_key: the reported key holding the learning rate, passed to the engine when present.
        schedule: the learning-rate schedule (`peng4nn.schedule.LRSchedule`) when known in advance.
        strict: a result without ``metric`` raises (False: skipped with a warning).
        check_finite: a NaN or infinite metric stops the trial as diverged (False: skipped).
        **policy_params: parameters of the policy (e.g. ``top=10`` for adaptive).
    """

    def __init__(
        self,
        metric: str = "val_acc",
        *,
        policy: str = DEFAULT_SEARCH_POLICY,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        value_scale: float = 1.0,
        epoch_key: str | None = None,
        epochs_per_step: float | None = None,
        lr_key: str = "lr",
        schedule: Any = None,
        strict: bool = True,
        check_finite: bool = True,
        **policy_params: Any,
    ):
        if isinstance(estimator, dict):
            estimator = EstimatorSettings(**estimator)
        self.estimator = estimator or EstimatorSettings()
        if epochs_per_step is not None and not (math.isfinite(epochs_per_step) and epochs_per_step > 0):
            raise ValueError(f"epochs_per_step must be a positive number but got {epochs_per_step!r}")
        self.metric = metric
        self.epoch_key = epoch_key
        self.epochs_per_step = epochs_per_step or self.estimator.E
        self.lr_key = lr_key
        self.policy = policy
        factory = make_policy_factory(policy, estimator=self.estimator, num_classes=num_classes, **policy_params)
        self._run_args = dict(policy=policy, estimator=self.estimator, num_classes=num_classes,
                              value_scale=value_scale, schedule=schedule, strict=strict, check_finite=check_finite,
                              search=factory, stop_at_max_epochs=True)
        RunWatch(metric, **self._run_args)  # validates value_scale and the schedule now
        #: What the experiment has learned (an `AdaptivePopulation` for adaptive, else None).
        self.search = factory if policy in SEARCH_POLICIES else None
        self._running: dict[str, RunWatch] = {}
        self._ended: dict[str, TrialEstimate] = {}

    # -- Tune's interface ------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict) -> bool:
        if trial_id in self._ended:
            return True
        run = self._running.get(trial_id)
        if run is None:
            run = self._running[trial_id] = RunWatch(self.metric, **self._run_args)
            run.start()
        epoch = self._epoch(result)
        lr = result.get(self.lr_key)
        lr = float(lr) if isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0 else None
        value = result.get(self.metric)
        if value is not None and not isinstance(value, (int, float)):
            raise TypeError(f"trial {trial_id}: {self.metric!r} must be a number; got {type(value).__name__}")
        try:
            run.observe(epoch, value, lr, logged=result)
        except (KeyError, ValueError) as exc:
            raise type(exc)(f"trial {trial_id}, epoch {epoch:g}: {exc.args[0]}") from None
        result.update(run.metrics())  # reaches the trial's logs and its ResultGrid entry
        stop = run.should_stop()
        if stop or result.get("done"):
            self._end(trial_id, run)
        return stop

    def stop_all(self) -> bool:
        return False

    # -- reading the estimates -------------------------------------------------------------------
    def estimate_of(self, trial_id: str) -> TrialEstimate | None:
        """The engine's final word on an ended trial, or its latest prediction while it runs."""
        if trial_id in self._ended:
            return self._ended[trial_id]
        run = self._running.get(trial_id)
        d = run.decision if run is not None else None
        if d is None or d.prediction is None:
            return None
        return TrialEstimate(d.prediction, d.interval, d.epoch, d.reason.value, False)

    def ranked(self) -> list[tuple[str, TrialEstimate]]:
        """Ended trials, best first by estimate (diverged last; ties keep the order they ended in)."""
        order = list(self._ended.items())
        return sorted(order, key=lambda kv: (kv[1].value is None, -(kv[1].value or 0.0)))

    def best_trial_id(self) -> str:
        """The trial PEng4NN predicts to be the experiment's best."""
        ranked = self.ranked()
        if not ranked or ranked[0][1].value is None:
            raise ValueError("no trial has ended with an estimate yet")
        return ranked[0][0]

    @property
    def n_running(self) -> int:
        return len(self._running)

    # -- internals -------------------------------------------------------------------------------
    def _epoch(self, result: dict) -> float:
        if self.epoch_key is not None:
            if self.epoch_key not in result:
                raise KeyError(f"the stopper reads epochs from {self.epoch_key!r}, which the result lacks; "
                               f"reported: {sorted(result)}")
            return float(result[self.epoch_key])
        return float(result["training_iteration"]) * self.epochs_per_step

    def _end(self, trial_id: str, run: RunWatch) -> None:
        run.end()  # the search learns it
        del self._running[trial_id]
        d = run.decision
        if d is not None and d.stop:
            self._ended[trial_id] = TrialEstimate(d.estimate, d.interval, d.epoch, d.reason.value, True)
        elif run.points:  # ended on its own: known by the best accuracy it showed
            best = max(a for _, a, _ in run.points)
            self._ended[trial_id] = TrialEstimate(best, None, run.points[-1][0], "curve_ended", True)
