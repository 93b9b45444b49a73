"""What a training run reports: one event per iteration and the result it ended with.

Plain dataclasses without torch, so that the API's and the SDK's wire models are derived from
these fields and their descriptions (`peng4nn.jobs.IterationPublic`, `ResultPublic`) and the
trainer (`peng4nn.train`) fills them: one declaration of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from peng4nn.analyzer import Decision


def _about(text: str, **kwargs: Any) -> Any:
    """A dataclass field with its description (the wire models' documentation)."""
    return field(metadata={"description": text}, **kwargs)


@dataclass
class IterationEvent:
    """One trained-and-validated iteration and what the engine made of it (its decision's fields join it
    on the wire)."""

    iteration: int = _about("1-based index of the iteration (E epochs each).")
    epoch: float = _about("Epochs trained so far.")
    train_loss: float = _about("Mean training loss of the iteration.")
    val_acc: float = _about("Validation accuracy in percent.")
    val_loss: float = _about("Validation loss.")
    decision: Decision = _about("The engine's decision after this point.")
    elapsed_s: float = _about("Wall time since training started (model built, data on device).")
    engine_s: float = _about("Time spent inside policy.observe this iteration (curve fit + analyzer).", default=0.0)
    iteration_s: float = _about("Wall time of this iteration: train + validate + engine.", default=0.0)
    lr: float | None = _about("Learning rate of this iteration (the spec's rate times its schedule).", default=None)

    def to_dict(self) -> dict[str, Any]:
        """The event as the worker publishes it: its own fields and its decision's, flat."""
        own = {f.name: getattr(self, f.name) for f in _EVENT_FIELDS if f.name != "decision"}
        return {**self.decision.to_dict(), **own}


@dataclass
class TrainResult:
    """How one model's run ended.

    Without shadow mode the main fields are the engine's answer. In shadow mode
    training always runs to e_max, so the main fields describe that full run
    (estimate = best validation accuracy, as the paper reports at e_max) and the
    ``shadow_*`` fields say where and with what estimate the engine would have stopped.
    """

    estimate: float | None = _about("Predicted final accuracy (percent); at e_max or in shadow mode the best seen.")
    converged: bool = _about("The engine converged before the run ended.")
    stop_epoch: float | None = _about("Epoch at which the run ended (the engine's stop, e_max, or the failure).")
    epochs_trained: float = _about("Epochs actually trained.")
    reason: str = _about("Why the run ended (a decision reason, diverged, out_of_memory or cancelled).")
    shadow_stop_epoch: float | None = _about("Shadow mode: where the engine would have stopped.", default=None)
    shadow_estimate: float | None = _about("Shadow mode: the estimate it would have stopped with.", default=None)
    shadow_converged: bool | None = _about("Shadow mode: whether the engine converged before e_max.", default=None)
    shadow_reason: str | None = _about("Shadow mode: the reason of that stop.", default=None)
    best_val_acc: float | None = _about("Best validation accuracy seen.", default=None)
    final_val_acc: float | None = _about("Validation accuracy at the last trained epoch.", default=None)
    device: str = _about("Device the run trained on.", default="cpu")
    interval: list[float] | None = _about("[lo, hi] of the estimate, when the policy gives one (adaptive).",
                                          default=None)
    shadow_interval: list[float] | None = _about(
        "Shadow mode: [lo, hi] of the estimate the engine would have stopped with.", default=None)
    wall_s: float = _about("Wall time of the run in seconds.", default=0.0)
    events: list[IterationEvent] = field(default_factory=list, metadata={"wire": False})

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in _RESULT_FIELDS if f.name != "events"}
        d["events"] = [e.to_dict() for e in self.events]
        return d


_EVENT_FIELDS = fields(IterationEvent)
_RESULT_FIELDS = fields(TrainResult)
