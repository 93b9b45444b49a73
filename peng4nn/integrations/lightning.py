"""A PyTorch Lightning callback that stops training when PEng4NN has converged on the validation curve.

After every validation run it reads the monitored validation accuracy, passes it with the
epochs trained so far (fractional when ``val_check_interval`` < 1, so 0.5 gives the
paper's E = 0.5) to the engine, and sets ``trainer.should_stop`` once the engine has
converged. The predicted final accuracy is logged as ``peng4nn_estimate`` and kept on the
callback (`estimate`, `decision`, `decisions`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from peng4nn.analyzer import Decision, EstimatorSettings
from peng4nn.integrations import ESTIMATE_ATTR, CurveObserver, open_curve

__all__ = ["PEng4NNEarlyStopping"]


class PEng4NNEarlyStopping(pl.Callback):
    """Stop a Lightning run when PEng4NN predicts its final validation accuracy.

    Args:
        monitor: the logged metric holding the validation accuracy.
        estimator: the engine's settings (paper symbols); defaults if omitted.
        num_classes: classes of the task (sets the never-learn threshold).
        value_scale: multiplies the metric into percent (100 when it is logged in [0, 1]).
        client: a `peng4nn.client.Client`: decide on that service instead of in-process.
        label: label of the remote session.
        stop_at_max_epochs: also stop when the engine reaches its e_max without converging.
    """

    def __init__(
        self,
        monitor: str = "val_acc",
        *,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        value_scale: float = 1.0,
        client: Any | None = None,
        label: str | None = None,
        stop_at_max_epochs: bool = False,
    ):
        super().__init__()
        if not (math.isfinite(value_scale) and value_scale > 0):
            raise ValueError(f"value_scale must be a positive number but got {value_scale!r}")
        self.monitor = monitor
        self.estimator = estimator
        self.num_classes = num_classes
        self.value_scale = value_scale
        self.client = client
        self.label = label
        self.stop_at_max_epochs = stop_at_max_epochs
        self.curve: CurveObserver | None = None
        self.points: list[tuple[float, float]] = []
        """The curve the engine saw: (epoch, accuracy in percent) per validation run."""
        self.decisions: list[Decision] = []

    @property
    def decision(self) -> Decision | None:
        """The engine's latest decision."""
        return self.decisions[-1] if self.decisions else None

    @property
    def estimate(self) -> float | None:
        """Predicted final accuracy (percent) once the engine stopped, else None."""
        return self.decision.estimate if self.decision is not None else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:  # one curve per run (a remote session per rank would be N sessions)
            self.curve = open_curve(self.client, estimator=self.estimator, num_classes=self.num_classes,
                                    label=self.label)
        self.points, self.decisions = [], []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Rank 0 decides; every rank joins the reduction (a collective call).
        stop = self._decide(trainer) if self.curve is not None else False
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True

    def _decide(self, trainer: pl.Trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"PEng4NNEarlyStopping monitors {self.monitor!r}, which was not logged; "
                f"logged metrics: {sorted(trainer.callback_metrics)}"
            )
        epoch = epochs_trained(trainer)
        if self.decisions and epoch <= self.decisions[-1].epoch:
            return False  # validated again without training in between (e.g. a manual trainer.validate())
        acc = float(value) * self.value_scale
        decision = self.curve.observe(epoch, acc)
        first_stop = decision.stop and not any(d.stop for d in self.decisions)
        self.points.append((epoch, acc))
        self.decisions.append(decision)
        if first_stop and decision.estimate is not None:
            if trainer.logger is not None:
                trainer.logger.log_metrics({ESTIMATE_ATTR: decision.estimate}, step=trainer.global_step)
            rank_zero_info(f"PEng4NN: {decision.reason.value} at epoch {epoch:g}; "
                           f"predicted final {self.monitor} {decision.estimate:.2f}%")
        return decision.stop and (decision.converged or self.stop_at_max_epochs)


def epochs_trained(trainer: pl.Trainer) -> float:
    """Epochs of training behind the current validation, fractional inside an epoch."""
    batches = trainer.num_training_batches
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if not batches or math.isinf(batches):
        return float(trainer.current_epoch + 1)
    return trainer.current_epoch + min(done, batches) / batches

