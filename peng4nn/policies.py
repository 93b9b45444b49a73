"""Stopping policies behind one decision interface: PEng4NN's rule and the baselines it is judged against.

Every policy is a `StoppingPolicy` (see analyzer.py): `observe(epoch, val_acc, val_loss,
train_loss) -> Decision`. This module is the one registry of them: `POLICIES` (one network at a
time), `SEARCH_POLICIES` (learning across a search) and `PEERS` (Optuna's pruners, run as
policies so replay judges them on the same curves). `make_policy` builds one network's policy,
`make_policy_factory` a search's factory (one call per network) for any of those names; the
CLI, replay, the report, the service, the workers and the plug-ins all build through these two.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peng4nn import defaults
from peng4nn.analyzer import (
    EPOCH_TOLERANCE,
    MAX_EPOCHS,
    MIN_E,
    CurvePoint,
    Decision,
    EstimatorSettings,
    PredictionAnalyzer,
    Reason,
    StoppingPolicy,
)
from peng4nn.curve import PrefixFitCache

__all__ = [
    "DEFAULT_LONE_POLICY",
    "DEFAULT_SEARCH_POLICY",
    "PEERS",
    "POLICIES",
    "POLICY_NAMES",
    "FixedBudgetPolicy",
    "MenndlPolicy",
    "PatiencePolicy",
    "PolicyConfigError",
    "PredictionAnalyzer",
    "StoppingPolicy",
    "default_policy",
    "require_search",
    "make_policy",
    "make_policy_factory",
]


class PolicyConfigError(ValueError):
    """A policy name or parameter is invalid; the message names which and why."""


class _BaselineSettings(BaseModel):
    """Finite and bounded like `EstimatorSettings` (the same MIN_E and MAX_EPOCHS)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    E: float = Field(defaults.E, ge=MIN_E, le=MAX_EPOCHS, description="Epochs per iteration.")
    e_max: float = Field(defaults.E_MAX, gt=0, le=MAX_EPOCHS, description="Maximum epochs a model trains.")


class MenndlSettings(_BaselineSettings):
    patience: float = Field(10, ge=0, le=MAX_EPOCHS, description="Epochs without a new minimum loss before stopping.")
    monitor: Literal["auto", "train_loss", "val_loss", "val_acc"] = Field(
        "auto", description="Signal watched; auto = train_loss if reported, else val_loss, else val_acc."
    )


class PatienceSettings(_BaselineSettings):
    patience: float = Field(5, ge=0, le=MAX_EPOCHS, description="Epochs without improvement of val_acc before stopping.")
    min_delta: float = Field(0.0, ge=0, le=100, description="Smallest increase of val_acc that counts as improvement.")


class FixedSettings(_BaselineSettings):
    k: float | None = Field(None, gt=0, le=MAX_EPOCHS, description="Epochs every model trains; default e_max.")


class _BestAccuracyPolicy(StoppingPolicy):
    """Baselines whose estimate is the best validation accuracy seen so far."""

    def _decision(self, epoch: float, reason: Reason, stop: bool) -> Decision:
        return Decision(
            epoch=epoch,
            prediction=None,
            a=None,
            b=None,
            c=None,
            converged=False,
            stop=stop,
            estimate=self.history.best_accuracy() if stop else None,
            reason=reason,
        )

    def _at_e_max(self, epoch: float) -> bool:
        return epoch >= self.e_max - EPOCH_TOLERANCE


class _PatienceRule(_BestAccuracyPolicy):
    """Stop when the watched signal has not improved for `settings.patience` epochs (or at e_max)."""

    def __init__(self, settings: MenndlSettings | PatienceSettings):
        super().__init__(E=settings.E, e_max=settings.e_max)
        self.settings = settings
        self._best: float | None = None
        self._best_epoch = 0.0

    @abstractmethod
    def _improves(self, value: float, best: float) -> bool:
        """Whether `value` beats the best so far."""

    @abstractmethod
    def _value(self, point: CurvePoint) -> float:
        """The watched signal at this point."""

    def _decide(self, epoch: float) -> Decision:
        value = self._value(self.history.points[-1])
        if self._best is None or self._improves(value, self._best):
            self._best, self._best_epoch = value, epoch
        if self._at_e_max(epoch):
            return self._decision(epoch, Reason.MAX_EPOCHS, True)
        if epoch - self._best_epoch >= self.settings.patience - EPOCH_TOLERANCE:
            return self._decision(epoch, Reason.PATIENCE_EXHAUSTED, True)
        return self._decision(epoch, Reason.UNSTABLE, False)


class MenndlPolicy(_PatienceRule):
    """MENNDL's rule: stop when the minimum training loss has not decreased for `patience` epochs."""

    name = "menndl"

    def __init__(self, settings: MenndlSettings):
        super().__init__(settings)
        self.monitor: str | None = None if settings.monitor == "auto" else settings.monitor

    def _value(self, point: CurvePoint) -> float:
        if self.monitor is None:
            self.monitor = (
                "train_loss" if point.train_loss is not None else "val_loss" if point.val_loss is not None else "val_acc"
            )
        value = getattr(point, self.monitor)
        if value is None:
            raise ValueError(f"{self.monitor} is required by the menndl policy (monitor={self.monitor}) but was missing")
        # Lower is better for losses; accuracy is negated so one comparison serves both.
        return -value if self.monitor == "val_acc" else value

    def _improves(self, value: float, best: float) -> bool:
        return value < best


class PatiencePolicy(_PatienceRule):
    """Keras EarlyStopping on validation accuracy: stop after `patience` epochs without a `min_delta` gain."""

    name = "patience"

    def _value(self, point: CurvePoint) -> float:
        return point.val_acc

    def _improves(self, value: float, best: float) -> bool:
        return value > best + self.settings.min_delta


class FixedBudgetPolicy(_BestAccuracyPolicy):
    """Train every model k epochs and rank by the best accuracy seen ("one epoch is all you need" with small k)."""

    name = "fixed"

    def __init__(self, settings: FixedSettings):
        k = settings.k if settings.k is not None else settings.e_max
        super().__init__(E=settings.E, e_max=min(k, settings.e_max))
        self.settings = settings
        self.k = k

    def _decide(self, epoch: float) -> Decision:
        if epoch >= self.k - EPOCH_TOLERANCE:
            return self._decision(epoch, Reason.BUDGET_REACHED, True)
        if self._at_e_max(epoch):
            return self._decision(epoch, Reason.MAX_EPOCHS, True)
        return self._decision(epoch, Reason.UNSTABLE, False)


def _build_paper(estimator: EstimatorSettings, num_classes, backend, params) -> StoppingPolicy:
    if params:
        raise PolicyConfigError(
            f"policy 'paper' takes its parameters from the estimator settings; unexpected {sorted(params)}"
        )
    return PredictionAnalyzer(estimator, num_classes=num_classes, backend=backend)


def _baseline_builder(cls, settings_cls) -> Callable[..., StoppingPolicy]:
    def build(estimator: EstimatorSettings, num_classes, backend, params) -> StoppingPolicy:
        merged = {"E": estimator.E, "e_max": estimator.e_max, **params}
        return cls(_validated(settings_cls, merged, f"policy {cls.name!r}"))

    return build


def _build_adaptive(estimator: EstimatorSettings, num_classes, backend, params) -> StoppingPolicy:
    """One network alone (no search to rank against); `make_policy_factory` gives the population-aware one."""
    from peng4nn.adaptive import AdaptivePolicy, AdaptiveSettings

    return AdaptivePolicy(_validated(AdaptiveSettings, params, "policy 'adaptive'"), estimator=estimator, num_classes=num_classes)


def _adaptive_population(estimator: EstimatorSettings, num_classes, backend, params) -> Callable[..., StoppingPolicy]:
    from peng4nn.adaptive import AdaptivePopulation, AdaptiveSettings

    settings = _validated(AdaptiveSettings, params, "policy 'adaptive'")
    return AdaptivePopulation(settings, estimator=estimator, num_classes=num_classes)


#: Policy name -> builder(estimator, num_classes, backend, params).
POLICIES: dict[str, Callable[..., StoppingPolicy]] = {
    "paper": _build_paper,
    "menndl": _baseline_builder(MenndlPolicy, MenndlSettings),
    "patience": _baseline_builder(PatiencePolicy, PatienceSettings),
    "fixed": _baseline_builder(FixedBudgetPolicy, FixedSettings),
    "adaptive": _build_adaptive,
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)

#: Peer methods (optional extra ``peng4nn[optuna]``): name -> what it runs. Only factories exist for these
#: (a pruner compares a trial with the study's others), built by `make_policy_factory` (peers.py).
PEERS: dict[str, str] = {
    "optuna-median": "optuna.pruners.MedianPruner (defaults: n_startup_trials=5, n_warmup_steps=0)",
    "optuna-sha": "optuna.pruners.SuccessiveHalvingPruner (defaults: min_resource='auto', reduction_factor=4)",
    "optuna-patient": "optuna.pruners.PatientPruner wrapping MedianPruner (default patience: 1 epoch)",
}

#: Policies that learn across the networks of one search: name -> builder of the search's factory.
SEARCH_POLICIES: dict[str, Callable[..., Callable[..., StoppingPolicy]]] = {
    "adaptive": _adaptive_population,
}

#: The defaults for a network of a search and for a lone one (`peng4nn.defaults`, where the reasons are).
DEFAULT_SEARCH_POLICY = defaults.SEARCH_POLICY
DEFAULT_LONE_POLICY = defaults.LONE_POLICY


def require_search(policy: str | None, search: str | None, field: str) -> None:
    """A population-aware policy over the API needs its search: alone it would silently fall back to a
    single-model rule that ranks worse than `paper` (docs/ADAPTIVE.md), so this is an error instead."""
    if policy in SEARCH_POLICIES and search is None:
        raise ValueError(f"policy {policy!r} ranks a network against the other networks of its search: give "
                         f"{field} (any name shared by the search's networks), or use policy 'paper' for a lone network")


def default_policy(in_search: bool) -> str:
    """The policy used when the caller names none: the one rule for the CLI, the API and the SDK."""
    return DEFAULT_SEARCH_POLICY if in_search else DEFAULT_LONE_POLICY


def _validated(settings_cls: type[BaseModel], values: dict[str, Any], owner: str):
    try:
        return settings_cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "?"
        raise PolicyConfigError(
            f"The {field!r} parameter of {owner} is invalid: {err['msg']}; got {err.get('input')!r}"
        ) from None


def make_policy(
    name: str = defaults.LONE_POLICY,
    *,
    estimator: EstimatorSettings | dict | None = None,
    num_classes: int | None = None,
    backend: str = defaults.BACKEND,
    **params: Any,
) -> StoppingPolicy:
    """Build a fresh per-model policy. E and e_max of the baselines default to the estimator's."""
    try:
        builder = POLICIES[name]
    except KeyError:
        raise PolicyConfigError(f"The 'policy' parameter must be one of {list(POLICIES)}; got {name!r} instead.") from None
    if estimator is None or isinstance(estimator, dict):
        estimator = _validated(EstimatorSettings, estimator or {}, "the estimator settings")
    return builder(estimator, num_classes, backend, params)


def make_policy_factory(
    name: str = DEFAULT_SEARCH_POLICY,
    *,
    estimator: EstimatorSettings | dict | None = None,
    num_classes: int | None = None,
    backend: str = defaults.BACKEND,
    **params: Any,
) -> Callable[..., StoppingPolicy]:
    """A factory for one search: call it once per network, in arrival order, for that network's policy.

    Population-aware policies (`SEARCH_POLICIES`) and peers (`PEERS`) share what earlier networks showed
    through the factory; the others get a fresh, independent policy per call. Bad names or parameters
    fail here, not at the first network. Given the network's recorded curve (replay), the paper policy
    fits all its prefixes in batches (`PrefixFitCache`): the same decisions at a fraction of the cost.
    """
    if estimator is None or isinstance(estimator, dict):
        estimator = _validated(EstimatorSettings, estimator or {}, "the estimator settings")
    if name in PEERS:
        from peng4nn.peers import make_peer_factory

        return make_peer_factory(name, E=estimator.E, e_max=estimator.e_max, **params)
    probe = make_policy(name, estimator=estimator, num_classes=num_classes, backend=backend, **params)  # validate now
    if name in SEARCH_POLICIES:
        return SEARCH_POLICIES[name](estimator, num_classes, backend, params)

    def factory(curve: Any = None) -> StoppingPolicy:
        if isinstance(probe, PredictionAnalyzer) and backend == "fast" and hasattr(curve, "val_acc"):
            return PredictionAnalyzer(probe.settings, num_classes=num_classes, backend=backend,
                                      fit_cache=PrefixFitCache(curve.epochs, curve.val_acc, backend))
        return make_policy(name, estimator=estimator, num_classes=num_classes, backend=backend, **params)

    return factory
