"""Peer early-stopping methods as stopping policies, so replay judges them on the same curves as PEng4NN.

Optuna's pruners are driven through the real ``optuna`` package, the way a NAS using
Optuna would run them: one in-memory study per replay, one trial per model in file
order (``study.ask()``), each validation point reported as an intermediate value
(``trial.report(val_acc, step)``, step = iteration number), ``trial.should_prune()``
after each point, and ``study.tell()`` when the model ends (pruned, or complete with
its best accuracy). A pruned model's estimate is the best accuracy it showed, which is
what a NAS holding a pruned trial knows about it.

Unlike PEng4NN these rules compare a model with the models that came before it, so the
first models of a run are never pruned (``n_startup_trials``) and the result depends
on the order of the curves.

The Keras-style patience rule is the ``patience`` policy in policies.py.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from peng4nn import defaults
from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, Reason, StoppingPolicy
from peng4nn.policies import PEERS, PolicyConfigError

__all__ = ["PEER_NAMES", "OptunaPrunerFactory", "OptunaTrialPolicy", "make_peer_factory"]

PEER_NAMES: tuple[str, ...] = tuple(PEERS)
"""The peers of the registry (`peng4nn.policies.PEERS`, with what each runs)."""

#: Default patience of optuna-patient, in epochs (converted to steps of E epochs).
DEFAULT_PATIENT_EPOCHS = 1.0


def _build_pruner(name: str, params: dict[str, Any], E: float):
    import optuna

    params = dict(params)
    if name == "optuna-median":
        return optuna.pruners.MedianPruner(**params)
    if name == "optuna-sha":
        return optuna.pruners.SuccessiveHalvingPruner(**params)
    if name == "optuna-patient":
        patience_epochs = float(params.pop("patience_epochs", DEFAULT_PATIENT_EPOCHS))
        if patience_epochs < 0:
            raise ValueError(f"patience_epochs cannot be negative but got {patience_epochs}")
        min_delta = params.pop("min_delta", 0.0)
        wrapped = optuna.pruners.MedianPruner(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(wrapped, patience=int(round(patience_epochs / E)), min_delta=min_delta)
    raise PolicyConfigError(f"The 'peer' parameter must be one of {list(PEER_NAMES)}; got {name!r} instead.")


class OptunaTrialPolicy(StoppingPolicy):
    """One model as one optuna trial: report each point, stop when the pruner says prune."""

    def __init__(self, study, trial, *, name: str, E: float, e_max: float):
        super().__init__(E=E, e_max=e_max)
        self.name = name
        self.study = study
        self.trial = trial
        self._told = False

    def _decide(self, epoch: float) -> Decision:
        if self.final is not None:  # already stopped: nothing more reaches the study
            return self._decision(epoch, self.final.reason, True)
        step = int(round(epoch / self.E))
        self.trial.report(self.history.points[-1].val_acc, step)
        if epoch >= self.e_max - EPOCH_TOLERANCE:
            return self._decision(epoch, Reason.MAX_EPOCHS, True)
        if self.trial.should_prune():
            return self._decision(epoch, Reason.OUT_OF_CONTENTION, True)
        return self._decision(epoch, Reason.UNSTABLE, False)

    def _decision(self, epoch: float, reason: Reason, stop: bool) -> Decision:
        return Decision(epoch=epoch, prediction=None, a=None, b=None, c=None, converged=False, stop=stop,
                        estimate=self.history.best_accuracy() if stop else None, reason=reason)

    def finish(self) -> None:
        """Close the trial: pruned if the pruner stopped it, else complete with its best accuracy."""
        if self._told:
            return
        from optuna.trial import TrialState

        self._told = True
        if self.final is not None and self.final.reason is Reason.OUT_OF_CONTENTION:
            self.study.tell(self.trial, state=TrialState.PRUNED)
        elif self.history.points:
            self.study.tell(self.trial, self.history.best_accuracy())
        else:
            self.study.tell(self.trial, state=TrialState.FAIL)


class OptunaPrunerFactory:
    """Holds one study; each call starts the next model's trial (call in model order, finish each model)."""

    def __init__(self, peer: str, *, E: float = defaults.E, e_max: float = defaults.E_MAX, **params: Any):
        import optuna

        if E <= 0:
            raise PolicyConfigError(f"The 'E' parameter must be positive; got {E!r} instead.")
        if e_max < E:
            raise PolicyConfigError(f"The 'e_max' parameter must be at least E ({E}); got {e_max!r} instead.")
        try:
            pruner = _build_pruner(peer, params, E)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, PolicyConfigError):
                raise
            raise PolicyConfigError(f"invalid parameters for peer {peer!r}: {exc}") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise
        self.name = peer
        self.E = float(E)
        self.e_max = float(e_max)
        self.pruner = pruner
        self.study = optuna.create_study(direction="maximize", pruner=pruner,
                                         sampler=optuna.samplers.RandomSampler(seed=0))

    def __call__(self, curve: Any = None) -> OptunaTrialPolicy:
        return OptunaTrialPolicy(self.study, self.study.ask(), name=self.name, E=self.E, e_max=self.e_max)


def make_peer_factory(peer: str, *, E: float = defaults.E, e_max: float = defaults.E_MAX, **params: Any) -> Callable[..., StoppingPolicy]:
    """A fresh factory (fresh study) for one replay of `peer`; `peng4nn.policies.make_policy_factory` calls it."""
    return OptunaPrunerFactory(peer, E=E, e_max=e_max, **params)
