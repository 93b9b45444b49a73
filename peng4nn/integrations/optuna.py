"""An Optuna pruner driven by PEng4NN, where a study is one search.

Each trial's intermediate values are its validation curve: ``trial.report(val_acc, step)`` with
step k (from 0) the validation after ``(k + 1) * epochs_per_step`` epochs. The default policy,
``adaptive``, ranks every trial against the study's finished trials: it learns them from the
study's storage (``study.get_trials``), so every process of a distributed study (RDB or journal
storage) ranks against the same trials, and nothing is kept in memory for a trial once it ended.

When the engine stops a trial (out of contention, or its final accuracy is known well enough)
`prune()` answers True, and the estimate, its interval and the reason are written to the study
(``study.set_user_attr``, one key per trial, so any process can read them). The objective may
then raise ``optuna.TrialPruned`` or return ``estimate_of(trial).value``; either way
`best_trial_by_estimate(study)` picks the study's best by what the engine predicted, which is
what a search should crown (Optuna's own ``study.best_trial`` ignores pruned trials).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from peng4nn.adaptive import FinishedNetwork
from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, EstimatorSettings, Reason
from peng4nn.integrations import (
    ESTIMATE_ATTR, INTERVAL_ATTR, REASON_ATTR, CurveObserver, TrialEstimate, check_scale, diverged, open_curve,
)
from peng4nn.policies import DEFAULT_SEARCH_POLICY, SEARCH_POLICIES, make_policy_factory

__all__ = [
    "LR_ATTR", "PEng4NNPruner", "TrialEstimate", "best_trial_by_estimate", "estimate_of", "ranked_trials", "report",
]

RECORD_PREFIX = "peng4nn:trial:"
"""Study user attribute ``<prefix><trial number>``: what the engine decided for that trial (JSON text)."""

LR_ATTR = "peng4nn_lr"
"""Trial user attribute holding the learning rate of the latest reported step (see `report`)."""

#: States of trials a search learns from. A failed trial's curve says nothing about its network.
_LEARN_FROM = (TrialState.COMPLETE, TrialState.PRUNED)
_RUNNING = (TrialState.RUNNING, TrialState.WAITING)


def report(trial: optuna.Trial, value: float, step: int, *, lr: float | None = None) -> None:
    """``trial.report(value, step)``, with the learning rate used to reach this step passed to the engine."""
    if lr is not None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise ValueError(f"lr must be a non-negative finite number; got {lr!r} (trial {trial.number}, step {step})")
        trial.set_user_attr(LR_ATTR, float(lr))
    trial.report(value, step)


@dataclass
class _Running:
    """A trial being decided in this process: its policy and the last step it was fed."""

    curve: CurveObserver
    last_step: int = -1
    latest: Decision | None = None


class PEng4NNPruner(BasePruner):
    """Prune a trial when PEng4NN says it is out of contention or its final accuracy is known.

    Args:
        policy: the stopping policy (``peng4nn.policies.POLICY_NAMES``); default ``adaptive``,
            which ranks every trial against the study's finished trials. ``paper`` is the
            published rule, one trial at a time.
        estimator: the engine's settings (paper symbols); e_max is the epochs a trial trains.
        num_classes: classes of the task (sets the never-learn threshold).
        epochs_per_step: epochs between two reported steps; default the estimator's E.
        value_scale: multiplies each intermediate value into percent (100 for accuracies in [0, 1]).
        schedule: the learning-rate schedule every trial trains with (`peng4nn.schedule.LRSchedule`,
            any initial rate), when known in advance; per-step rates come from `report(..., lr=)`.
        client: a `peng4nn.client.Client`: decide on that service instead of in-process (the
            service's search, named after the study, is then the population).
        label_prefix: remote sessions are labelled ``<prefix><trial number>``.
        **policy_params: parameters of the policy (e.g. ``top=10`` for adaptive).
    """

    def __init__(
        self,
        policy: str = DEFAULT_SEARCH_POLICY,
        *,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        epochs_per_step: float | None = None,
        value_scale: float = 1.0,
        schedule: Any = None,
        client: Any | None = None,
        label_prefix: str = "optuna-trial-",
        **policy_params: Any,
    ):
        if isinstance(policy, (dict, EstimatorSettings)):
            raise TypeError("the first argument of PEng4NNPruner is the policy name; pass the estimator "
                            "settings as estimator=...")
        if isinstance(estimator, dict):
            estimator = EstimatorSettings(**estimator)
        self.estimator = estimator or EstimatorSettings()
        if epochs_per_step is not None and not (math.isfinite(epochs_per_step) and epochs_per_step > 0):
            raise ValueError(f"epochs_per_step must be a positive number but got {epochs_per_step!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 but got {num_classes!r}")
        self.policy = policy
        self.policy_params = policy_params
        self.num_classes = num_classes
        self.epochs_per_step = epochs_per_step or self.estimator.E
        self.value_scale = check_scale(value_scale)
        self.schedule = schedule.bound(self.estimator.e_max) if hasattr(schedule, "bound") else schedule
        self.client = client
        self.label_prefix = label_prefix
        # Validates the policy name and parameters now, not at the first report.
        self._factory = make_policy_factory(policy, estimator=self.estimator, num_classes=num_classes, **policy_params)
        self._in_search = policy in SEARCH_POLICIES
        self._study_name: str | None = None
        #: The study of the prune() call in progress (under the lock): the population's source reads it.
        self._current: optuna.study.Study | None = None
        self._running: dict[int, _Running] = {}
        #: Finished trials the population has learned (numbers only: the population keeps what it needs).
        self._learned: set[int] = set()
        self._lock = threading.RLock()
        if self._in_search and client is None:
            self._factory.source = self._newly_finished

    def epoch_of_step(self, step: int) -> float:
        return (step + 1) * self.epochs_per_step

    # -- optuna's interface ---------------------------------------------------------------------
    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        """Feed the trial's new intermediate values to its policy; True once the engine stops it."""
        with self._lock:
            self._bind(study)
            state = self._running.get(trial.number)
            if state is None:
                done = _read_record(study.user_attrs, trial.number)
                if done is not None:  # stopped earlier (in this process or another): the answer stands
                    return _prunes(Reason(done["reason"]))
                self._forget_ended(study)
            self._current = study
            try:
                if state is None:
                    if self._in_search and self.client is None:
                        self._factory.refresh()  # the trial's role follows from the trials finished so far
                    state = self._running[trial.number] = _Running(self._open(study, trial))
                return self._feed(study, trial, state)
            finally:
                self._current = None

    # -- deciding --------------------------------------------------------------------------------
    def _feed(self, study: optuna.study.Study, trial: FrozenTrial, state: _Running) -> bool:
        values = trial.intermediate_values
        new = sorted(s for s in values if s > state.last_step)
        lr = trial.user_attrs.get(LR_ATTR)
        decision = state.latest
        for step in new:
            value = values[step]
            epoch = self.epoch_of_step(step)
            if not math.isfinite(value):  # diverged: prune, as Optuna's own pruners do on NaN
                decision = diverged(epoch)
            else:
                try:
                    decision = state.curve.observe(epoch, value * self.value_scale,
                                                   lr=lr if step == new[-1] else None)
                except ValueError as exc:
                    raise ValueError(f"trial {trial.number}, step {step}: intermediate value {value!r} "
                                     f"(x value_scale {self.value_scale}): {exc}") from None
            state.last_step, state.latest = step, decision
            if decision.stop:
                self._record(study, trial.number, state, decision)
                del self._running[trial.number]  # the trial ends here: keep nothing of it
                return _prunes(decision.reason)
        return False

    def _record(self, study: optuna.study.Study, number: int, state: _Running, decision: Decision) -> None:
        """Write the stop to the study, where every process (and `estimate_of`) finds it."""
        outcome = state.curve.outcome() if hasattr(state.curve, "outcome") else None
        record = {"epoch": decision.epoch, "estimate": decision.estimate, "reason": decision.reason.value,
                  "interval": list(decision.interval) if decision.interval is not None else None}
        if outcome is not None:
            record.update(epochs_used=outcome.epochs_used, full=outcome.full, audit=outcome.flat_audit_asked,
                          reference=outcome.reference, rates=list(outcome.rates) if outcome.rates else None)
        study.set_user_attr(f"{RECORD_PREFIX}{number}", json.dumps(record))

    def _open(self, study: optuna.study.Study, trial: FrozenTrial) -> CurveObserver:
        if self.client is not None:
            return open_curve(self.client, policy=self.policy, estimator=self.estimator,
                              num_classes=self.num_classes, label=f"{self.label_prefix}{trial.number}",
                              search=study.study_name if self._in_search else None,
                              policy_params=self.policy_params)
        return open_curve(search=self._factory, schedule=self.schedule)

    def _bind(self, study: optuna.study.Study) -> None:
        if self._study_name is None:
            if len(study.directions) != 1 or study.directions[0] != StudyDirection.MAXIMIZE:
                directions = [d.name.lower() for d in study.directions]
                raise ValueError(
                    f"PEng4NNPruner ranks validation accuracies (higher is better), so the study must be created "
                    f"with direction='maximize'; study {study.study_name!r} has direction(s) {directions}. Report "
                    f"accuracy (or 100 - error rate) as intermediate values in a maximize study.")
            self._study_name = study.study_name
        elif study.study_name != self._study_name:
            raise ValueError(f"this PEng4NNPruner belongs to study {self._study_name!r} (a study is one search); "
                             f"create another pruner for study {study.study_name!r}")

    # -- the search: learning the study's finished trials ----------------------------------------
    def _newly_finished(self, n: int) -> list[FinishedNetwork]:
        """`AdaptivePopulation.source`: the study's trials that finished since the population last looked."""
        study = self._current
        if study is None:
            raise RuntimeError("the search asked for the study's trials outside prune()")
        trials = [t for t in study.get_trials(deepcopy=False, states=_LEARN_FROM) if t.number not in self._learned]
        if not trials:
            return []
        trials.sort(key=lambda t: (t.datetime_complete or datetime.max, t.number))
        records = study.user_attrs
        out = []
        for t in trials:
            self._learned.add(t.number)
            self._running.pop(t.number, None)
            network = self._network(t, _read_record(records, t.number))
            if network is not None:
                out.append(network)
        return out

    def _network(self, trial: FrozenTrial, record: dict | None) -> FinishedNetwork | None:
        """What the search learns from a finished trial: its curve up to the stop, and the estimate."""
        if record is not None and record["estimate"] is None:
            return None  # diverged: says nothing about curves that train
        points = []
        for step, value in sorted(trial.intermediate_values.items()):
            acc = value * self.value_scale
            if not (math.isfinite(acc) and 0.0 <= acc <= 100.0):
                return None
            points.append((self.epoch_of_step(step), acc))
        if record is not None and "epochs_used" in record:
            points = [p for p in points if p[0] <= record["epochs_used"] + EPOCH_TOLERANCE]
        if not points:
            return None
        epochs, accs = zip(*points)
        if record is not None and "epochs_used" in record:
            rates = record.get("rates")
            return FinishedNetwork(epochs, accs, float(record["estimate"]), float(record["epochs_used"]),
                                   bool(record["full"]), bool(record.get("audit", False)),
                                   bool(record.get("reference", False)),
                                   tuple(rates[:len(epochs)]) if rates and len(rates) >= len(epochs) else None)
        # Ended without a stop from the engine (the objective returned, or a record from another policy).
        full = epochs[-1] >= self.estimator.e_max - EPOCH_TOLERANCE
        return FinishedNetwork(epochs, accs, max(accs), epochs[-1], full)

    def _forget_ended(self, study: optuna.study.Study) -> None:
        """Drop the policies of trials that ended without a stop (the objective returned or failed)."""
        if not self._running:
            return
        alive = {t.number for t in study.get_trials(deepcopy=False, states=_RUNNING)}
        for number in [n for n in self._running if n not in alive]:
            _finish_remote(self._running.pop(number).curve)

    @property
    def search(self) -> Any:
        """What this process's search has learned (an `AdaptivePopulation` for adaptive; None for one-trial
        policies or a remote service)."""
        return self._factory if self._in_search and self.client is None else None

    @property
    def n_running(self) -> int:
        """Trials this process is deciding now (a trial's policy is dropped as soon as it ends)."""
        return len(self._running)

    def running_policy(self, number: int) -> CurveObserver | None:
        """The policy deciding a running trial in this process (None once it ended)."""
        state = self._running.get(number)
        return state.curve if state is not None else None

    def running_estimate(self, number: int) -> TrialEstimate | None:
        """The latest prediction for a trial this process is still deciding, if it has one."""
        with self._lock:
            state = self._running.get(number)
            d = state.latest if state is not None else None
        if d is None or d.prediction is None:
            return None
        return TrialEstimate(d.prediction, d.interval, d.epoch, d.reason.value, False)


def _prunes(reason: Reason) -> bool:
    """Every stop prunes except e_max, where the trial ends by itself and completes."""
    return reason is not Reason.MAX_EPOCHS


def _finish_remote(curve: CurveObserver) -> None:
    finish = getattr(curve, "finish", None)
    if finish is not None and not hasattr(curve, "outcome"):  # local policies learn from the study instead
        finish()


def _read_record(user_attrs: dict, number: int) -> dict | None:
    raw = user_attrs.get(f"{RECORD_PREFIX}{number}")
    return json.loads(raw) if raw is not None else None


# -- reading the estimates -----------------------------------------------------------------------


def estimate_of(trial: optuna.Trial | FrozenTrial, study: optuna.study.Study | None = None) -> TrialEstimate | None:
    """What PEng4NN says about ``trial``: its final estimate and interval once stopped, else its latest prediction.

    A live ``Trial`` (inside the objective) finds its study itself, and also gets the estimate as its
    user attributes ``peng4nn_estimate``, ``peng4nn_interval`` and ``peng4nn_reason``. A ``FrozenTrial``
    needs its ``study``, unless the objective called this on it while it ran. None: nothing yet.
    """
    live = isinstance(trial, optuna.Trial)
    study = trial.study if live else study
    if study is None:
        if ESTIMATE_ATTR not in trial.user_attrs:
            return None
        interval = trial.user_attrs.get(INTERVAL_ATTR)
        return TrialEstimate(trial.user_attrs[ESTIMATE_ATTR], tuple(interval) if interval else None,
                             float("nan"), trial.user_attrs.get(REASON_ATTR, ""), True)
    record = _read_record(study.user_attrs, trial.number)
    if record is None:
        pruner = study.pruner
        return pruner.running_estimate(trial.number) if isinstance(pruner, PEng4NNPruner) else None
    interval = tuple(record["interval"]) if record["interval"] is not None else None
    estimate = TrialEstimate(record["estimate"], interval, record["epoch"], record["reason"], True)
    if live and ESTIMATE_ATTR not in trial.user_attrs:
        trial.set_user_attr(ESTIMATE_ATTR, estimate.value)
        trial.set_user_attr(INTERVAL_ATTR, list(interval) if interval else None)
        trial.set_user_attr(REASON_ATTR, estimate.reason)
    return estimate


def ranked_trials(study: optuna.study.Study) -> list[tuple[FrozenTrial, TrialEstimate]]:
    """The study's finished trials, best first, by PEng4NN's estimate of their final accuracy.

    A trial the engine never stopped (the objective ended it) is ranked by the best accuracy it
    reported. Diverged trials come last; failed ones are left out. Ties keep trial order.
    """
    pruner = study.pruner
    scale = pruner.value_scale if isinstance(pruner, PEng4NNPruner) else 1.0
    step_epochs = pruner.epoch_of_step if isinstance(pruner, PEng4NNPruner) else (lambda s: float(s + 1))
    records = study.user_attrs
    ranked = []
    for t in study.get_trials(deepcopy=False, states=_LEARN_FROM):
        record = _read_record(records, t.number)
        if record is not None:
            interval = tuple(record["interval"]) if record["interval"] is not None else None
            ranked.append((t, TrialEstimate(record["estimate"], interval, record["epoch"], record["reason"], True)))
            continue
        finite = [(s, v * scale) for s, v in t.intermediate_values.items() if math.isfinite(v)]
        if finite:
            best = max(v for _, v in finite)
            ranked.append((t, TrialEstimate(best, None, step_epochs(max(s for s, _ in finite)), "curve_ended", True)))
        elif t.intermediate_values:
            ranked.append((t, TrialEstimate(None, None, step_epochs(max(t.intermediate_values)), "diverged", True)))
    ranked.sort(key=lambda pair: (pair[1].value is None, -(pair[1].value or 0.0), pair[0].number))
    return ranked


def best_trial_by_estimate(study: optuna.study.Study) -> FrozenTrial:
    """The trial PEng4NN predicts to be the study's best (the first of `ranked_trials`).

    Use it instead of ``study.best_trial``, which only sees completed trials and their returned
    values: a network stopped early with a high estimate is pruned, not completed.
    """
    ranked = ranked_trials(study)
    if not ranked or ranked[0][1].value is None:
        raise ValueError(f"study {study.study_name!r} has no finished trial with an estimate yet")
    return ranked[0][0]
