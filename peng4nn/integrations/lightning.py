"""A PyTorch Lightning callback that stops training when PEng4NN has its answer on the validation curve.

After every validation run it reads the monitored validation accuracy, the epochs trained so far
(fractional when ``val_check_interval`` < 1, so 0.5 gives the paper's E = 0.5) and the learning rate
of the trainer's first optimizer, and passes them to the engine (`RunWatch` holds the rule). It logs
``peng4nn_estimate`` (the running prediction, the final estimate once stopped) and its interval
``peng4nn_lo``/``peng4nn_hi`` at every validation, and sets ``trainer.should_stop`` once the engine
stops the run. Its state is saved in Lightning checkpoints, so a resumed run keeps its curve.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from peng4nn.analyzer import Decision, EstimatorSettings
from peng4nn.integrations._run import MonitorMissingWarning, RunWatch
from peng4nn.policies import DEFAULT_LONE_POLICY, StoppingPolicy

__all__ = ["MonitorMissingWarning", "PEng4NNEarlyStopping"]


class PEng4NNEarlyStopping(pl.Callback):
    """Stop a Lightning run when PEng4NN says so (its final accuracy is known, or it is out of contention).

    Args:
        monitor: the logged metric holding the validation accuracy.
        policy: the stopping policy for this run alone (default ``paper``).
        search: a factory from `peng4nn.policies.make_policy_factory("adaptive", ...)` shared by the
            runs of one search in this process (or, with ``client``, the service's search id).
        estimator: the engine's settings (paper symbols); defaults if omitted.
        num_classes: classes of the task (sets the never-learn threshold).
        value_scale: multiplies the metric into percent (100 when it is logged in [0, 1]).
        schedule: the learning-rate schedule (`peng4nn.schedule.LRSchedule`) when known in advance.
        strict: raise when the metric was not logged (False: skip the point with a warning).
        check_finite: stop the run as diverged when the metric is NaN or infinite.
        client: a `peng4nn.client.Client`: decide on that service instead of in-process.
        label: label of the remote session.
        stop_at_max_epochs: also stop when the engine reaches its e_max.
    """

    def __init__(
        self,
        monitor: str = "val_acc",
        *,
        policy: str = DEFAULT_LONE_POLICY,
        search: Callable[..., StoppingPolicy] | str | None = None,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        value_scale: float = 1.0,
        schedule: Any = None,
        strict: bool = True,
        check_finite: bool = True,
        client: Any | None = None,
        label: str | None = None,
        stop_at_max_epochs: bool = False,
        **policy_params: Any,
    ):
        super().__init__()
        self.monitor = monitor
        self._lr: float | None = None
        self.run = RunWatch(monitor, policy=policy, search=search, estimator=estimator, num_classes=num_classes,
                            value_scale=value_scale, schedule=schedule, strict=strict, check_finite=check_finite,
                            client=client, label=label, stop_at_max_epochs=stop_at_max_epochs,
                            policy_params=policy_params)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

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
        """The engine's latest decision."""
        return self.run.decision

    @property
    def estimate(self) -> float | None:
        """Predicted final accuracy (percent) once the engine stopped, else None."""
        return self.run.estimate

    @property
    def curve(self):
        return self.run.curve

    # -- Lightning's hooks -----------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run.start()
        self._lr = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # Read here, not at validation: epoch-interval schedulers step before the epoch's last validation.
        self._lr = learning_rate(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Rank 0 decides (one curve per run, not one per rank); every rank joins the reduction.
        stop = self._decide(trainer) if trainer.is_global_zero else False
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on an exception: a crashed run teaches its search nothing (as a failed Optuna trial), and
        # resumed from its checkpoint it goes on with its curve.
        if trainer.is_global_zero:
            self.run.end()

    def state_dict(self) -> dict[str, Any]:
        return self.run.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run.load_state_dict(state_dict)

    def _decide(self, trainer: pl.Trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        epoch = epochs_trained(trainer)
        decision = self.run.observe(epoch, None if value is None else float(value), self._lr,
                                    logged=trainer.callback_metrics)
        if decision is None:
            return False
        metrics = self.run.metrics()
        for name, v in metrics.items():  # other callbacks (a ModelCheckpoint, say) may monitor them
            trainer.callback_metrics[name] = torch.tensor(v)
        if trainer.logger is not None and metrics:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        if decision.stop and not any(d.stop for d in self.run.decisions[:-1]):
            estimate = "none (diverged)" if decision.estimate is None else f"{decision.estimate:.2f}%"
            rank_zero_info(f"PEng4NN: {decision.reason.value} at epoch {epoch:g}; "
                           f"predicted final {self.monitor} {estimate}")
        return self.run.should_stop()


def epochs_trained(trainer: pl.Trainer) -> float:
    """Epochs of training behind the current validation, fractional inside an epoch."""
    batches = trainer.num_training_batches
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if not batches or math.isinf(batches):
        return float(trainer.current_epoch + 1)
    return trainer.current_epoch + min(done, batches) / batches


def learning_rate(trainer: pl.Trainer) -> float | None:
    """The rate the next training step uses: the first parameter group of the first optimizer."""
    try:
        rate = trainer.optimizers[0].param_groups[0]["lr"]
    except (IndexError, KeyError, AttributeError):
        return None
    rate = float(rate)
    return rate if math.isfinite(rate) and rate >= 0 else None
