"""Plug-ins that let existing searches use PEng4NN's decision on networks they train themselves.

* `peng4nn.integrations.optuna.PEng4NNPruner` (extra ``peng4nn[optuna]``)
* `peng4nn.integrations.lightning.PEng4NNEarlyStopping` (extra ``peng4nn[lightning]``)

Both watch one curve per model through a `CurveObserver`: the library's own
`StoppingPolicy` in-process by default, or a session on a PEng4NN service when given a
`peng4nn.client.Client`. Either way the decision comes from the same policy object.
This package imports neither optuna nor lightning; each plug-in module imports its own.
"""

from __future__ import annotations

from typing import Any, Protocol

from peng4nn.analyzer import Decision, EstimatorSettings
from peng4nn.policies import make_policy

__all__ = ["CurveObserver", "open_curve", "ESTIMATE_ATTR", "REASON_ATTR"]

ESTIMATE_ATTR = "peng4nn_estimate"
"""Name under which the plug-ins record the predicted final accuracy (percent)."""

REASON_ATTR = "peng4nn_reason"
"""Name under which the plug-ins record why the engine stopped."""


class CurveObserver(Protocol):
    """Anything that takes one model's validation points and answers a `Decision`."""

    def observe(self, epoch: float, val_acc: float, val_loss: float | None = None,
                train_loss: float | None = None) -> Decision: ...


def open_curve(
    client: Any | None = None,
    *,
    estimator: EstimatorSettings | dict | None = None,
    num_classes: int | None = None,
    label: str | None = None,
) -> CurveObserver:
    """A fresh observer for one model: an in-process policy, or a service session when ``client`` is given."""
    if client is None:
        return make_policy("paper", estimator=estimator, num_classes=num_classes, backend="fast")
    return client.observe(estimator=estimator, num_classes=num_classes, label=label)
