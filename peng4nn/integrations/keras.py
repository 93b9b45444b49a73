"""A Keras 3 callback that stops ``model.fit`` when PEng4NN has its answer on the validation curve.

The Keras twin of the Lightning callback (the rule is `RunWatch`'s): after every epoch it reads
the monitored validation accuracy (Keras logs it in [0, 1], hence ``value_scale=100``) and the
learning rate the epoch's last batch used, passes them to the engine, adds ``peng4nn_estimate``
(and ``peng4nn_lo``/``peng4nn_hi`` when the policy gives an interval) to the epoch's logs, and sets
``model.stop_training`` once the engine stops the run. Keras validates once per epoch, so the
engine's E defaults to 1. With ``backup_path`` its curve survives an interrupted fit the way
``keras.callbacks.BackupAndRestore`` makes the model survive it.

Any Keras back-end works; when none is chosen, this module picks torch (a core dependency).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from peng4nn.analyzer import Decision, EstimatorSettings  # noqa: E402
from peng4nn.integrations._run import MonitorMissingWarning, RunWatch  # noqa: E402
from peng4nn.policies import DEFAULT_LONE_POLICY, StoppingPolicy  # noqa: E402

__all__ = ["MonitorMissingWarning", "PEng4NNEarlyStopping"]


class PEng4NNEarlyStopping(keras.callbacks.Callback):
    """Stop a Keras fit when PEng4NN says so (its final accuracy is known, or it is out of contention).

    Args:
        monitor: the logged metric holding the validation accuracy.
        value_scale: multiplies the metric into percent (Keras accuracies are in [0, 1]: 100).
        estimator: the engine's settings (paper symbols); E defaults to 1 (one validation per epoch).
        backup_path: a JSON file where the curve is saved after every epoch and read back when a fit
            starts (deleted when a fit ends), to pair with ``keras.callbacks.BackupAndRestore``.
        policy, search, num_classes, schedule, strict, check_finite, client, label,
        stop_at_max_epochs, **policy_params: as for the Lightning callback.
    """

    def __init__(
        self,
        monitor: str = "val_accuracy",
        *,
        value_scale: float = 100.0,
        policy: str = DEFAULT_LONE_POLICY,
        search: Callable[..., StoppingPolicy] | str | None = None,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        schedule: Any = None,
        strict: bool = True,
        check_finite: bool = True,
        backup_path: str | os.PathLike | None = None,
        client: Any | None = None,
        label: str | None = None,
        stop_at_max_epochs: bool = False,
        **policy_params: Any,
    ):
        super().__init__()
        if estimator is None or isinstance(estimator, dict):
            estimator = EstimatorSettings(**{"E": 1.0, **(estimator or {})})
        self.monitor = monitor
        self.backup_path = Path(backup_path) if backup_path is not None else None
        self.run = RunWatch(monitor, policy=policy, search=search, estimator=estimator, num_classes=num_classes,
                            value_scale=value_scale, schedule=schedule, strict=strict, check_finite=check_finite,
                            client=client, label=label, stop_at_max_epochs=stop_at_max_epochs,
                            policy_params=policy_params)
        self._lr: float | None = None

    # -- what a user reads -----------------------------------------------------------------------
    @property
    def points(self) -> list[tuple[float, float, float | None]]:
        """(epoch, accuracy in percent, learning rate) of every validation the engine saw."""
        return self.run.points

    @property
    def decisions(self) -> list[Decision]:
        return self.run.decisions

    @property
    def decision(self) -> Decision | None:
        return self.run.decision

    @property
    def estimate(self) -> float | None:
        """Predicted final accuracy (percent) once the engine stopped, else None."""
        return self.run.estimate

    @property
    def curve(self):
        return self.run.curve

    def state_dict(self) -> dict[str, Any]:
        return self.run.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.load_state_dict(state)

    # -- Keras's hooks ---------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.backup_path is not None and self.backup_path.is_file():
            self.run.load_state_dict(json.loads(self.backup_path.read_text()))
        self.run.start()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._lr = learning_rate(self.model)  # the rate this batch trains with; the last one is the epoch's

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        decision = self.run.observe(float(epoch + 1), None if value is None else float(value), self._lr, logged=logs)
        if decision is None:
            return
        logs.update(self.run.metrics())  # History and later callbacks see them
        if self.backup_path is not None:
            tmp = self.backup_path.with_suffix(self.backup_path.suffix + ".tmp")
            tmp.write_text(json.dumps(self.run.state_dict()))
            os.replace(tmp, self.backup_path)  # a crash mid-write leaves the previous backup whole
        if self.run.should_stop():
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self.run.end()
        if self.backup_path is not None:
            self.backup_path.unlink(missing_ok=True)


def learning_rate(model: Any) -> float | None:
    """The optimizer's current rate (a schedule is evaluated at the current step), or None."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None
    return rate if math.isfinite(rate) and rate >= 0 else None
