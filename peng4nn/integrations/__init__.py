"""Plug-ins that let existing searches use PEng4NN's decision on networks they train themselves.

* `peng4nn.integrations.optuna.PEng4NNPruner` (extra ``peng4nn[optuna]``): a study is one search.
* `peng4nn.integrations.lightning.PEng4NNEarlyStopping` (extra ``peng4nn[lightning]``)
* `peng4nn.integrations.keras.PEng4NNEarlyStopping` (extra ``peng4nn[keras]``, Keras 3)
* `peng4nn.integrations.ray.PEng4NNStopper` (extra ``peng4nn[ray]``): a Tune experiment is one search.

Each watches one curve per network through a `CurveObserver`: the library's own `StoppingPolicy`
in-process by default, or a session on a PEng4NN service when given a `peng4nn.client.Client`.
Either way the decision comes from the same policy object. This package imports none of the
frameworks; each plug-in module imports its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from peng4nn.analyzer import Decision, EstimatorSettings, Reason
from peng4nn.policies import DEFAULT_LONE_POLICY, StoppingPolicy, make_policy
from peng4nn.schedule import LRSchedule

__all__ = [
    "CurveObserver", "ESTIMATE_ATTR", "INTERVAL_ATTR", "REASON_ATTR", "TrialEstimate", "check_scale", "diverged",
    "open_curve",
]

ESTIMATE_ATTR = "peng4nn_estimate"
"""Name under which the plug-ins record the predicted final accuracy (percent)."""

INTERVAL_ATTR = "peng4nn_interval"
"""Name under which the plug-ins record the estimate's interval ``[lo, hi]`` (percent)."""

REASON_ATTR = "peng4nn_reason"
"""Name under which the plug-ins record why the engine stopped."""


@dataclass(frozen=True)
class TrialEstimate:
    """What the engine says about one trial (a network of a search) and its final accuracy (percent)."""

    #: The estimate; None for a trial that diverged (NaN or infinite reports).
    value: float | None
    #: Interval for it at the policy's nominal level, when the policy gives one.
    interval: tuple[float, float] | None
    #: Epochs trained when it was made.
    epoch: float
    reason: str
    #: True once the engine stopped the trial (the estimate is its last word); False for the
    #: running prediction of a trial that is still training.
    final: bool


class CurveObserver(Protocol):
    """Anything that takes one network's validation points and answers a `Decision`."""

    def observe(self, epoch: float, val_acc: float, val_loss: float | None = None,
                train_loss: float | None = None, lr: float | None = None) -> Decision: ...


class _RemoteCurve:
    """A service session behind the observer interface (the rate of each point is sent with it)."""

    def __init__(self, session: Any):
        self.session = session

    def observe(self, epoch: float, val_acc: float, val_loss: float | None = None,
                train_loss: float | None = None, lr: float | None = None) -> Decision:
        return self.session.observe(epoch, val_acc, val_loss, train_loss, lr)

    def get(self) -> dict:
        return self.session.get()

    def finish(self) -> None:
        """A session that never stopped joins its search only when deleted."""
        self.session.delete()


def open_curve(
    client: Any | None = None,
    *,
    policy: str = DEFAULT_LONE_POLICY,
    estimator: EstimatorSettings | dict | None = None,
    num_classes: int | None = None,
    label: str | None = None,
    search: Callable[..., StoppingPolicy] | str | None = None,
    schedule: Any = None,
    policy_params: dict | None = None,
) -> CurveObserver:
    """A fresh observer for one network.

    In-process: `search` is a factory from `make_policy_factory` shared by the networks of one
    search (called once per network, in arrival order), else a fresh ``policy``. With ``client``:
    a service session; `search` is then the service's search id, and ``schedule`` is sent when it is an
    `LRSchedule` (bound or not; another `RateSchedule` has no wire form, the per-point rates still go).
    """
    if client is not None:
        search_id = search if isinstance(search, str) else None
        wire_schedule = getattr(schedule, "schedule", schedule)  # a BoundSchedule's LRSchedule
        if not isinstance(wire_schedule, LRSchedule):
            wire_schedule = None
        return _RemoteCurve(client.observe(estimator=estimator, num_classes=num_classes, label=label,
                                           policy=policy, policy_params=policy_params or None, search=search_id,
                                           schedule=wire_schedule))
    if callable(search):
        observer = search()
    else:
        observer = make_policy(policy, estimator=estimator, num_classes=num_classes, **(policy_params or {}))
    if schedule is not None:
        observer.schedule = schedule
    return observer


def check_scale(value_scale: float) -> float:
    if not (isinstance(value_scale, (int, float)) and math.isfinite(value_scale) and value_scale > 0):
        raise ValueError(f"value_scale must be a positive number but got {value_scale!r}")
    return float(value_scale)


def diverged(epoch: float) -> Decision:
    """The decision for a network whose metric became NaN or infinite: stop, no estimate."""
    return Decision(epoch=epoch, prediction=None, a=None, b=None, c=None, converged=False, stop=True,
                    estimate=None, reason=Reason.DIVERGED)
