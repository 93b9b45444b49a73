"""One training run as a framework callback sees it: the rule shared by the Lightning and Keras callbacks.

The callbacks only translate their framework (where the metric, the epoch and the learning rate
are, how to stop, where to log); what a point means, when a run stops, what happens to a NaN,
and what a checkpoint holds are decided here, once.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from peng4nn.analyzer import Decision, EstimatorSettings, Reason
from peng4nn.integrations import CurveObserver, check_scale, diverged, open_curve
from peng4nn.policies import DEFAULT_LONE_POLICY, StoppingPolicy, make_policy

__all__ = ["MonitorMissingWarning", "RunWatch", "STATE_VERSION"]

STATE_VERSION = 1
"""Version of `RunWatch.state_dict()`; a checkpoint of another version is refused by name."""


class MonitorMissingWarning(UserWarning):
    """The monitored metric was not logged at a validation (``strict=False``): the point is skipped."""


class RunWatch:
    """The engine's view of one run: its points, its decisions, and whether it should stop.

    Args:
        monitor: the metric holding the validation accuracy (used in messages).
        policy: the stopping policy of a lone run; default ``paper``.
        search: a factory from `peng4nn.policies.make_policy_factory` shared by the runs of one search
            (each run gets the next policy; the search learns the run when it ends). With ``client``:
            the service's search id.
        strict: a missing metric raises (True) or is skipped with a `MonitorMissingWarning`.
        check_finite: a NaN or infinite metric stops the run as diverged (True) or is skipped.
        stop_at_max_epochs: also stop when the engine reaches its e_max.
    """

    def __init__(
        self,
        monitor: str,
        *,
        policy: str = DEFAULT_LONE_POLICY,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        value_scale: float = 1.0,
        client: Any | None = None,
        label: str | None = None,
        search: Callable[..., StoppingPolicy] | str | None = None,
        schedule: Any = None,
        strict: bool = True,
        check_finite: bool = True,
        stop_at_max_epochs: bool = False,
        policy_params: dict | None = None,
    ):
        self.monitor = monitor
        self.value_scale = check_scale(value_scale)
        if isinstance(estimator, dict):
            estimator = EstimatorSettings(**estimator)
        self.estimator = estimator
        if search is None and client is None:
            make_policy(policy, estimator=estimator, num_classes=num_classes, **(policy_params or {}))  # validate now
        self._open_args = dict(policy=policy, estimator=estimator, num_classes=num_classes, label=label,
                               search=search, policy_params=policy_params)
        self.client = client
        e_max = (estimator or EstimatorSettings()).e_max
        self.schedule = schedule.bound(e_max) if hasattr(schedule, "bound") else schedule
        self.strict = strict
        self.check_finite = check_finite
        self.stop_at_max_epochs = stop_at_max_epochs
        self.curve: CurveObserver | None = None
        self.points: list[tuple[float, float, float | None]] = []
        """The curve the engine saw: (epoch, accuracy in percent, learning rate or None) per validation."""
        self.decisions: list[Decision] = []
        self._warned = False
        self._ended = False
        #: A checkpoint's state was loaded and the run it belongs to has not ended yet.
        self._restored = False

    # -- what the callbacks read -----------------------------------------------------------------
    @property
    def decision(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def estimate(self) -> float | None:
        """The predicted final accuracy (percent) once the engine stopped, else None."""
        d = self.decision
        return d.estimate if d is not None and d.stop else None

    def metrics(self) -> dict[str, float]:
        """What to log after a validation: the running estimate (the final one once stopped) and its interval."""
        d = self.decision
        if d is None:
            return {}
        value = d.estimate if d.stop else d.prediction
        out = {} if value is None else {"peng4nn_estimate": float(value)}
        if d.interval is not None:
            out["peng4nn_lo"], out["peng4nn_hi"] = float(d.interval[0]), float(d.interval[1])
        return out

    def should_stop(self) -> bool:
        d = self.decision
        return d is not None and d.stop and (d.reason is not Reason.MAX_EPOCHS or self.stop_at_max_epochs)

    # -- the run -------------------------------------------------------------------------------------
    def start(self) -> None:
        """A new run, unless a checkpoint was loaded for it: then it goes on from there."""
        if not self._restored:
            self.curve, self.points, self.decisions = None, [], []
        self._ended = False

    def observe(self, epoch: float, value: Any, lr: float | None = None, logged: Any = ()) -> Decision | None:
        """One validation: the new decision, or None when the point is skipped (not after the last, missing)."""
        if self.decisions and epoch <= self.decisions[-1].epoch + 1e-9:
            return None  # validated again without training in between, or replayed after a resume
        if self.decisions and self.decisions[-1].stop and self.decisions[-1].reason is Reason.DIVERGED:
            return None
        if value is None:
            message = (f"the engine monitors {self.monitor!r}, which was not logged; "
                       f"logged metrics: {sorted(logged)}")
            if self.strict:
                raise KeyError(message)
            if not self._warned:
                warnings.warn(message + " (skipped: strict=False)", MonitorMissingWarning, stacklevel=3)
                self._warned = True
            return None
        acc = float(value) * self.value_scale
        if not math.isfinite(acc):
            if not self.check_finite:
                return None
            decision = diverged(epoch)
        else:
            if self.curve is None:
                self._open()
            try:
                decision = self.curve.observe(epoch, acc, lr=lr)
            except ValueError as exc:
                raise ValueError(f"{self.monitor} at epoch {epoch:g} (x value_scale {self.value_scale:g}) = "
                                 f"{acc!r}: {exc}") from None
            self.points.append((epoch, acc, lr))
        self.decisions.append(decision)
        return decision

    def end(self) -> None:
        """The run is over: a network of a search joins it (a remote session that never stopped is closed,
        which is how it joins); a diverged one does not."""
        self._restored = False
        if self._ended or self.curve is None:
            return
        self._ended = True
        if self.decision is not None and self.decision.reason is Reason.DIVERGED:
            return  # a diverged network teaches the search nothing about networks that train
        stopped = any(d.stop for d in self.decisions)
        finish = getattr(self.curve, "finish", None)
        if finish is not None and (hasattr(self.curve, "outcome") or not stopped):
            finish()

    def _open(self) -> None:
        """The engine's policy; after a resume it is fed the restored points again, which rebuilds it exactly."""
        self.curve = open_curve(self.client, schedule=self.schedule, **self._open_args)
        for epoch, acc, lr in self.points:
            self.curve.observe(epoch, acc, lr=lr)

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "monitor": self.monitor, "points": [list(p) for p in self.points],
                "decisions": [d.to_dict() for d in self.decisions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"PEng4NN callback state of version {state.get('version')!r} cannot be loaded "
                             f"(this version reads {STATE_VERSION})")
        if state.get("monitor") != self.monitor:
            raise ValueError(f"the checkpoint's PEng4NN callback monitored {state.get('monitor')!r}, "
                             f"this one monitors {self.monitor!r}")
        self.points = [(float(e), float(a), None if lr is None else float(lr)) for e, a, lr in state["points"]]
        self.decisions = [Decision.from_dict(d) for d in state["decisions"]]
        self.curve = None  # rebuilt from the points at the next validation
        self._restored = True
