"""The `adaptive` policy: ranking-aware, uncertainty-aware stopping for a population of networks.

A NAS uses estimates to rank networks, so what matters is not "is this curve's asymptote stable"
(the paper's rule) but "can this network still reach the top x% of its search, and if so, is its
rank known yet". Three ideas the paper's rule leaves out:

* Uncertainty. Each point gets a profile-likelihood interval for the curve's value at e_max
  (peng4nn/intervals.py), clipped to [best accuracy seen, 100]: the final best accuracy can
  never be below what was already observed.
* Learning from the population. The first `warmup_models` networks of a search train to e_max;
  every network that reaches e_max is a reference: at each epoch we know what its interval said
  and what it finally reached. Their normalised residuals r = (final - estimate) / width
  calibrate new intervals by split conformal prediction (never narrower than the curve's own),
  and the median residual corrects the point estimate. A second, model-free bound: the best
  final accuracy among references that looked no better at the same epoch ("dominance").
  Curves still at chance level are judged apart: they are kept while the search's own history
  says late bloomers are common (at least `min_bloom_rate` of the curves flat at that epoch went
  on to learn), else stopped after `flat_patience` epochs.
* Ranking. A network whose upper bound (the larger of the two) is below the search's current
  top-x% threshold stops, out of contention; one that could still beat the search's best keeps
  training (even over budget: regret@1 matters); one clearly inside the top x%, or whose
  interval is narrower than `resolve` (or the search's noise), stops with its estimate.

Searches are populations: `AdaptivePopulation` holds what one search has learned and is itself
the per-model factory replay asks for (`population(curve) -> AdaptivePolicy`, models in order).
`make_policy("adaptive")` alone gives a single-model policy (no population): it stops when its
nominal interval is narrow, and never calls a curve that is still at chance level "never learns"
before `flat_patience` epochs.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, EstimatorSettings, Reason, StoppingPolicy
from peng4nn.intervals import DEFAULT_NU0, DEFAULT_SIGMA0, CurveInterval, curve_interval

__all__ = ["AdaptiveSettings", "AdaptivePolicy", "AdaptivePopulation", "CalibratedEstimate", "FinishedNetwork"]

#: Smallest interval width (points) used to normalise residuals, so exact fits do not divide by 0.
WIDTH_FLOOR = 0.5

#: References (networks trained to e_max) needed at an epoch before they calibrate or stop anything.
MIN_REFERENCES = 5

#: A noisy search's estimates are "resolved" at this many noise standard deviations (see `resolve`).
NOISE_RESOLVE = 1.0

#: Flat curves are kept this many epochs past the latest bloom the search has seen.
BLOOM_MARGIN = 1.0

#: Points above the flat level a curve must eventually reach for its rise to count as a bloom, not noise.
BLOOM_RISE = 10.0


class AdaptiveSettings(BaseModel):
    """Parameters of the adaptive policy (E, e_max and never_learn come from the estimator settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top: float = Field(20.0, gt=0, le=100, description="Target fraction x (percent) of the search to identify.")
    budget: float | None = Field(
        None,
        gt=0,
        description="Mean epochs per network after the warm-up; unspent epochs carry over to later networks. "
        "None: no cap beyond e_max.",
    )
    level: float = Field(0.90, gt=0, lt=1, description="Nominal two-sided coverage of every reported interval.")
    stop_level: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="One-sided confidence that a network is below the top-x% threshold before it is stopped.",
    )
    warmup_models: int = Field(
        10, ge=0, description="First networks of a search trained to e_max to calibrate the rest."
    )
    min_epochs: float = Field(
        0.0, ge=0, description="No decision before this epoch (the fit needs c_min points anyway)."
    )
    resolve: float = Field(
        0.75, ge=0, description="Stop once the calibrated interval's half-width is at most this (points)."
    )
    dominance: bool = Field(
        True,
        description="Also require that no reference that looked no better at this epoch reached the threshold "
        "before calling a network out of contention (safer, costs epochs).",
    )
    flat_margin: float = Field(
        3.0, ge=0, description="Points above the never-learn marker a noisy curve may show and still count as flat."
    )
    min_bloom_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Keep flat curves past an epoch only while at least this fraction of the search's curves flat "
        "there went on to learn.",
    )
    flat_audit: int = Field(
        5,
        ge=0,
        description="Every n-th curve still flat at its first decision is kept for half of e_max, to find out "
        "whether this search has late bloomers (0: never).",
    )
    flat_audits_max: int = Field(
        10,
        ge=0,
        description="Audits (curves kept by flat_audit) after which the search stops auditing: by then it has "
        "measured its bloom rate (0: no limit).",
    )
    flat_patience: float = Field(
        2.0,
        ge=0,
        description="Epochs a curve at chance level is kept before it stops as never-learn (longer once the "
        "search has seen late bloomers).",
    )


@dataclass(frozen=True)
class CalibratedEstimate:
    """Estimate and interval for a network's best accuracy up to e_max, at one epoch."""

    estimate: float
    lo: float
    hi: float
    #: Upper bound at the one-sided stop_level (used for "out of contention").
    upper: float
    calibrated: bool
    fit: CurveInterval | None
    #: The conformal part of `upper` (None when uncalibrated); the rest is the dominance bound.
    conformal_upper: float | None = None


@dataclass
class _Record:
    """A finished network as the population remembers it (only what was observed)."""

    epochs: np.ndarray
    accs: np.ndarray
    estimate: float
    epochs_used: float
    full: bool


@dataclass(frozen=True)
class FinishedNetwork:
    """Everything a search learns from one finished network: plain data, so a service can store it.

    A population is a pure function of its finished networks in arrival order, so processes that
    add the same networks in the same order make the same decisions.
    """

    epochs: tuple[float, ...]
    accs: tuple[float, ...]
    estimate: float
    epochs_used: float
    full: bool
    #: Whether the network asked for a flat-curve audit ticket (it counts towards "every n-th").
    flat_audit_asked: bool = False

    def to_dict(self) -> dict:
        return {"epochs": list(self.epochs), "accs": list(self.accs), "estimate": self.estimate,
                "epochs_used": self.epochs_used, "full": self.full, "flat_audit_asked": self.flat_audit_asked}

    @classmethod
    def from_dict(cls, data: dict) -> "FinishedNetwork":
        return cls(tuple(map(float, data["epochs"])), tuple(map(float, data["accs"])), float(data["estimate"]),
                   float(data["epochs_used"]), bool(data["full"]), bool(data.get("flat_audit_asked", False)))


def _epoch_key(epoch: float, E: float) -> int:
    return int(round(epoch / E))


def _conformal(sorted_scores: np.ndarray, q: float) -> float:
    """Split-conformal quantile: the ceil((n+1) q)-th smallest score (the largest when n is small)."""
    n = len(sorted_scores)
    k = min(n, max(1, math.ceil((n + 1) * q)))
    return float(sorted_scores[k - 1])


class _EpochReferences:
    """What the references showed at one epoch: residual scores, best-so-far and final accuracy."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, float, float]] = []
        self._dirty = False
        self.scores = np.empty(0)
        self.best = np.empty(0)
        self.final_prefix_max = np.empty(0)

    def add(self, score: float, best: float, final: float) -> None:
        self._rows.append((score, best, final))
        self._dirty = True

    def __len__(self) -> int:
        return len(self._rows)

    def refresh(self) -> None:
        if not self._dirty:
            return
        rows = np.array(self._rows)
        self.scores = np.sort(rows[:, 0])
        order = np.argsort(rows[:, 1], kind="stable")
        self.best = rows[order, 1]
        self.final_prefix_max = np.maximum.accumulate(rows[order, 2])
        self._dirty = False

    def dominated_max(self, best: float) -> float:
        """Best final accuracy among references that looked no better at this epoch (at least the 3 worst)."""
        k = max(int(np.searchsorted(self.best, best, side="right")), min(3, len(self.best)))
        return float(self.final_prefix_max[k - 1])


class AdaptivePopulation:
    """What one search has learned so far; call it to get the next network's policy.

    Models are expected in arrival order; only models that called `finish()` inform later ones.
    """

    def __init__(
        self,
        settings: AdaptiveSettings | dict | None = None,
        *,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
    ):
        self.settings = _as(AdaptiveSettings, settings)
        self.estimator = _as(EstimatorSettings, estimator)
        self.num_classes = num_classes
        self.flat_level = self.estimator.never_learn_threshold(num_classes) + self.settings.flat_margin
        self.records: list[_Record] = []
        self._sorted_estimates: list[float] = []
        #: Epochs spent and networks finished after the warm-up (what the budget counts).
        self._spent_after_warmup = 0.0
        self._finished_after_warmup = 0
        self._references: list[_Record] = []
        self._by_epoch: dict[int, _EpochReferences] = {}
        #: Curves flat at their first decision: (last epoch seen still flat, epoch it started learning or
        #: None, best accuracy it showed).
        self._flat_histories: list[tuple[float, float | None, float]] = []
        self._flat_patience = self.settings.flat_patience
        self._flat_seen = 0
        self.sigma0: float = DEFAULT_SIGMA0
        self._sigma_frozen = False
        #: Where networks finished elsewhere come from (a service sets it): `source(n)` returns the
        #: finished networks after the first n, in arrival order. None: everything is added here.
        self.source: Callable[[int], Iterable[FinishedNetwork]] | None = None

    # -- the factory replay calls ------------------------------------------------------------
    def __call__(self, curve=None) -> "AdaptivePolicy":
        """A policy for the next network of this search (`curve` is ignored: no peeking)."""
        return AdaptivePolicy(self.settings, estimator=self.estimator, num_classes=self.num_classes, population=self)

    # -- what the policies ask ----------------------------------------------------------------
    @property
    def n_finished(self) -> int:
        return len(self.records)

    @property
    def ready(self) -> bool:
        """Enough finished networks to rank against (the warm-up is over)."""
        return self.n_finished >= max(self.settings.warmup_models, 1) and self._sigma_frozen

    def threshold(self) -> float:
        """Estimate a newcomer must beat to be in the top x% of the search (itself included)."""
        n = len(self._sorted_estimates)
        k = max(1, math.floor(self.settings.top / 100.0 * (n + 1)))
        return self._sorted_estimates[n - min(k, n)]

    def leader(self) -> float:
        """The best estimate of the search so far."""
        return self._sorted_estimates[-1]

    def mean_epochs_with(self, epochs: float) -> float:
        """Mean epochs per post-warm-up network if the current one stopped now."""
        return (self._spent_after_warmup + epochs) / (self._finished_after_warmup + 1)

    def next_flat_is_audit(self) -> bool:
        """Every `flat_audit`-th flat curve is kept for half of e_max: without it a search that stops
        flat curves early never sees a late bloom, and never learns to wait for one.

        Counted over finished networks that asked (`FinishedNetwork.flat_audit_asked`), so the answer
        depends only on the finished networks; networks running at the same time may share a ticket.
        After `flat_audits_max` audits the search has measured its bloom rate and stops paying for more."""
        n, cap = self.settings.flat_audit, self.settings.flat_audits_max
        k = self._flat_seen + 1
        return n > 0 and k % n == 0 and (cap == 0 or k <= cap * n)

    def refresh(self) -> None:
        """Called before every decision of this search's policies: learn the networks finished elsewhere."""
        if self.source is not None:
            for network in self.source(self.n_finished):
                self.add(network)

    def flat_patience(self) -> float:
        """Epochs a flat curve is kept: the setting, or longer while this search's late bloomers are common."""
        return self._flat_patience

    def references_at(self, epoch: float) -> _EpochReferences | None:
        """Learning references at this epoch, or None when fewer than MIN_REFERENCES."""
        refs = self._by_epoch.get(_epoch_key(epoch, self.estimator.E))
        if refs is None or len(refs) < MIN_REFERENCES:
            return None
        refs.refresh()
        return refs

    # -- learning ------------------------------------------------------------------------------
    def add(self, network: FinishedNetwork) -> None:
        """Learn from one finished network (in arrival order)."""
        self._flat_seen += int(network.flat_audit_asked)
        self.record(np.array(network.epochs, dtype=float), np.array(network.accs, dtype=float), network.estimate,
                    network.epochs_used, network.full)

    def record(self, epochs: np.ndarray, accs: np.ndarray, estimate: float, epochs_used: float, full: bool) -> None:
        rec = _Record(epochs, accs, estimate, epochs_used, full)
        self.records.append(rec)
        bisect.insort(self._sorted_estimates, estimate)
        if self.ready:
            self._spent_after_warmup += epochs_used
            self._finished_after_warmup += 1
        self._note_bloom(epochs, accs)
        if not full:
            return
        self._references.append(rec)
        if self._sigma_frozen:
            self._score(rec)
        elif len(self._references) >= max(self.settings.warmup_models, 1):
            self._freeze_sigma()

    def _note_bloom(self, epochs: np.ndarray, accs: np.ndarray) -> None:
        first = max(self.estimator.c_min, 3) - 1
        if len(accs) <= first or accs[: first + 1].max() > self.flat_level:
            return
        learned = np.nonzero(accs > self.flat_level)[0]
        if accs.max() < self.flat_level + BLOOM_RISE or not len(learned):  # noise around chance, not learning
            self._flat_histories.append((float(epochs[-1]), None, float(accs.max())))
            return
        onset = float(epochs[learned[0]])
        self._flat_histories.append((onset - self.estimator.E, onset, float(accs.max())))
        self._flat_patience = self._patience_from_blooms()

    def _patience_from_blooms(self) -> float:
        """The latest bloom onset o such that, of the curves seen still flat just before o, (about) at least
        min_bloom_rate bloomed at o or later into the top x%: waiting longer is not worth its epochs."""
        # Only a bloom that reached the (current) top-x% threshold is worth waiting for: the ranking is
        # all the search uses.
        threshold = self.threshold()
        blooms = [o for _, o, best in self._flat_histories if o is not None and best >= threshold]
        for o in sorted(blooms, reverse=True):
            watched = sum(1 for until, _, _ in self._flat_histories if until >= o - self.estimator.E - EPOCH_TOLERANCE)
            later = sum(1 for b in blooms if b >= o - EPOCH_TOLERANCE)
            # Laplace's rule of succession: with few curves watched, lean towards waiting (a bloomer cut
            # at chance level is never seen again, so an early low count is weak evidence).
            if (later + 1) / (watched + 2) >= self.settings.min_bloom_rate:
                return min(max(self.settings.flat_patience, o + BLOOM_MARGIN), self.estimator.e_max)
        return self.settings.flat_patience

    def _freeze_sigma(self) -> None:
        """Fix the prior noise level from the warm-up references, then score them all with it."""
        sigmas = []
        for ref in self._references:
            ci = curve_interval(ref.epochs, ref.accs, self.estimator.e_max, level=self.settings.level, nu0=0.0)
            if ci is not None:
                sigmas.append(ci.sigma)
        if sigmas:
            self.sigma0 = max(float(np.median(sigmas)), 0.05)
        self._sigma_frozen = True
        for ref in self._references:
            self._score(ref)

    def _score(self, ref: _Record) -> None:
        """At every decision epoch where the reference was learning: its residual (normalised) and best."""
        final = float(ref.accs.max())
        E = self.estimator.E
        running_best = np.maximum.accumulate(ref.accs)
        for i in range(max(self.estimator.c_min, 3) - 1, len(ref.epochs) - 1):
            if running_best[i] <= self.flat_level:
                continue
            raw = nominal_estimate(
                ref.epochs[: i + 1], ref.accs[: i + 1], self.estimator.e_max, self.settings.level, self.sigma0
            )
            if raw is None:
                continue
            width = _residual_scale(raw)
            key = _epoch_key(float(ref.epochs[i]), E)
            self._by_epoch.setdefault(key, _EpochReferences()).add(
                (final - raw.estimate) / width, float(running_best[i]), final
            )


def _residual_scale(raw: CalibratedEstimate) -> float:
    """What a reference's residual is measured in, so references with different widths compare."""
    return max(raw.hi - raw.lo, WIDTH_FLOOR)


def nominal_estimate(epochs, accs, e_max: float, level: float, sigma0: float) -> CalibratedEstimate | None:
    """The curve interval turned into an interval for the best accuracy up to e_max (uncalibrated)."""
    ci = curve_interval(epochs, accs, e_max, level=level, sigma0=sigma0, nu0=DEFAULT_NU0, ceiling=100.0)
    if ci is None:
        return None
    best = float(np.max(accs))

    def clip(v: float) -> float:
        return min(max(v, best), 100.0)

    return CalibratedEstimate(clip(ci.estimate), clip(ci.lo), clip(ci.hi), clip(ci.hi), False, ci)


class AdaptivePolicy(StoppingPolicy):
    """One network under the adaptive rule; with a population it ranks itself against the search."""

    name = "adaptive"

    def __init__(
        self,
        settings: AdaptiveSettings | dict | None = None,
        *,
        estimator: EstimatorSettings | dict | None = None,
        num_classes: int | None = None,
        population: AdaptivePopulation | None = None,
    ):
        self.settings = _as(AdaptiveSettings, settings)
        self.estimator = _as(EstimatorSettings, estimator)
        super().__init__(E=self.estimator.E, e_max=self.estimator.e_max)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        self.population = population
        self.flat_level = self.estimator.never_learn_threshold(num_classes) + self.settings.flat_margin
        self.last_estimate: CalibratedEstimate | None = None
        self._flat_at_first_decision = False
        #: Epoch of the last flat point of a late bloomer (None: not a late bloomer, or not yet).
        self._bloom_start: float | None = None
        #: Whether this flat curve was chosen to be watched for late blooming (None: not asked yet).
        self._audit: bool | None = None
        self._finished = False

    # -- estimation ----------------------------------------------------------------------------
    def estimate_now(self) -> CalibratedEstimate | None:
        """Estimate of the best accuracy up to e_max from the points so far, calibrated when the search allows."""
        h = self.history
        if len(h.points) < max(self.estimator.c_min, 3):
            return None
        pop = self.population
        sigma0 = pop.sigma0 if pop is not None else DEFAULT_SIGMA0
        epochs, accs = h.epochs(), h.accuracies()
        age = float(epochs[-1])
        if self._bloom_start is not None:
            # A late bloomer is judged as a network that started at its bloom: its flat prefix says
            # nothing about its shape, and at its true epoch it would look worse than every reference.
            keep = epochs >= self._bloom_start - EPOCH_TOLERANCE
            if keep.sum() < 3:
                return None
            epochs, accs = epochs[keep], accs[keep]
            age = float(epochs[-1]) - self._bloom_start + self.E
        raw = nominal_estimate(epochs, accs, self.e_max, self.settings.level, sigma0)
        if raw is not None and self.is_flat():
            # At chance level the estimate is what was seen: a fit through noise around chance can
            # extrapolate anywhere (a never-learner once ranked first in a generated search). The
            # interval keeps the fit's upper end: whether it will learn is exactly what is unknown.
            best = float(accs.max())
            return CalibratedEstimate(best, best, raw.hi, raw.upper, False, raw.fit)
        if raw is None or pop is None or not pop.ready:
            return raw
        refs = pop.references_at(age)
        if refs is None:
            return raw
        best = float(accs.max())
        width = _residual_scale(raw)
        alpha = 1.0 - self.settings.level

        def at(q: float) -> float:
            return min(max(raw.estimate + _conformal(refs.scores, q) * width, best), 100.0)

        mid = min(max(raw.estimate + float(np.median(refs.scores)) * width, best), 100.0)
        # Never narrower than the curve's own interval: few references make conformal quantiles optimistic.
        lo, hi = min(at(alpha / 2), raw.lo), max(at(1.0 - alpha / 2), raw.hi)
        conformal_upper = at(self.settings.stop_level)
        upper = max(conformal_upper, refs.dominated_max(best) if self.settings.dominance else best)
        # The reported interval reaches the bound the rule reasons with (hi >= upper from here on).
        return CalibratedEstimate(mid, min(lo, mid), max(hi, mid, upper), upper, True, raw.fit, conformal_upper)

    def _track_bloom(self) -> None:
        """Note whether the curve was flat at its first decision point and, if so, where it left chance level."""
        points = self.history.points
        if len(points) == max(self.estimator.c_min, 3):
            self._flat_at_first_decision = self.is_flat()
        if self._flat_at_first_decision and self._bloom_start is None and not self.is_flat():
            self._bloom_start = points[-2].epoch  # the last flat point is the new curve's first

    def is_flat(self) -> bool:
        """Still at chance level (within the noise margin): maybe a never-learner, maybe a late bloomer."""
        return self.history.best_accuracy() <= self.flat_level

    # -- the rule ------------------------------------------------------------------------------
    def _decide(self, epoch: float) -> Decision:
        if self.final is not None:  # already stopped: the base class repeats the first stop
            return self._decision(epoch, self.last_estimate, self.final.reason, stop=True)
        if self.population is not None:
            self.population.refresh()
        best = self.history.best_accuracy()
        if epoch >= self.e_max - EPOCH_TOLERANCE:
            return Decision(epoch, best, None, None, None, False, True, best, Reason.MAX_EPOCHS, (best, best))
        self._track_bloom()
        est = self.estimate_now()
        self.last_estimate = est
        if est is None:
            return self._decision(epoch, None, Reason.TOO_FEW_POINTS)
        if epoch < self.settings.min_epochs - EPOCH_TOLERANCE:
            return self._decision(epoch, est, Reason.WARMING_UP)
        pop = self.population
        if pop is not None and not pop.ready:
            return self._decision(epoch, est, Reason.WARMING_UP)
        if self.is_flat():
            if pop is None:
                patience = self.settings.flat_patience
            else:
                if self._audit is None:
                    self._audit = pop.next_flat_is_audit()
                patience = self.e_max / 2 if self._audit else pop.flat_patience()
                if self._over_budget(epoch, pop):
                    return self._decision(epoch, est, Reason.BUDGET_REACHED, stop=True)
            if epoch >= patience - EPOCH_TOLERANCE:
                return self._decision(epoch, est, Reason.OUT_OF_CONTENTION, stop=True)  # never learned
            return self._decision(epoch, est, Reason.UNSTABLE)  # maybe a late bloomer
        if pop is None:
            return self._decide_alone(epoch, est)
        return self._decide_in_population(epoch, est, pop)

    def _over_budget(self, epoch: float, pop: AdaptivePopulation) -> bool:
        budget = self.settings.budget
        return budget is not None and pop.mean_epochs_with(epoch) >= budget - EPOCH_TOLERANCE

    def _decide_alone(self, epoch: float, est: CalibratedEstimate) -> Decision:
        """Without a population: stop once the estimate is known to within `resolve` points."""
        if est.hi - est.lo > 2 * self.settings.resolve + 1e-12:
            return self._decision(epoch, est, Reason.UNSTABLE)
        return self._decision(epoch, est, Reason.CONVERGED, stop=True, converged=True)

    def _decide_in_population(self, epoch: float, est: CalibratedEstimate, pop: AdaptivePopulation) -> Decision:
        s = self.settings
        threshold = pop.threshold()
        if est.calibrated and est.upper < threshold:
            return self._decision(epoch, est, Reason.OUT_OF_CONTENTION, stop=True)
        if est.upper >= pop.leader():
            return self._decision(epoch, est, Reason.UNSTABLE)  # could be the best of the search: even over budget
        if self._over_budget(epoch, pop):
            return self._decision(epoch, est, Reason.BUDGET_REACHED, stop=True)
        resolve = max(s.resolve, NOISE_RESOLVE * pop.sigma0)  # no finer than the validation noise allows
        if est.lo >= threshold or est.hi - est.lo <= 2 * resolve + 1e-12:
            return self._decision(epoch, est, Reason.CONVERGED, stop=True, converged=True)
        return self._decision(epoch, est, Reason.UNSTABLE)

    def _decision(
        self,
        epoch: float,
        est: CalibratedEstimate | None,
        reason: Reason,
        *,
        stop: bool = False,
        converged: bool = False,
    ) -> Decision:
        params = est.fit.paper_parameters() if est is not None and est.fit is not None else None
        a, b, c = params if params is not None else (None, None, None)
        if self.final is not None:
            return Decision(
                epoch, est.estimate if est else None, a, b, c,
                self.final.converged, True, self.final.estimate, self.final.reason, self.final.interval,
            )
        return Decision(
            epoch=epoch,
            prediction=est.estimate if est else None,
            a=a,
            b=b,
            c=c,
            converged=converged,
            stop=stop,
            estimate=est.estimate if (stop and est) else None,
            reason=reason,
            interval=(est.lo, est.hi) if est else None,
        )

    # -- end of training -----------------------------------------------------------------------
    def finish(self) -> None:
        """Tell the population what this network showed, up to where it stopped (never beyond)."""
        if self._finished or self.population is None:
            return
        network = self.outcome()
        self._finished = True
        if network is not None:
            self.population.add(network)

    def outcome(self) -> FinishedNetwork | None:
        """What `finish()` tells the population (None before the first point); a service stores it instead."""
        if not self.history.points:
            return None
        stop_epoch = self.final.epoch if self.final is not None else self.history.points[-1].epoch
        pts = [p for p in self.history.points if p.epoch <= stop_epoch + EPOCH_TOLERANCE]
        if self.final is not None and self.final.estimate is not None:
            estimate = self.final.estimate
        elif self.last_estimate is not None:
            estimate = self.last_estimate.estimate
        else:
            estimate = max(p.val_acc for p in pts)
        full = stop_epoch >= self.e_max - EPOCH_TOLERANCE
        return FinishedNetwork(tuple(p.epoch for p in pts), tuple(p.val_acc for p in pts), float(estimate),
                               float(stop_epoch), bool(full), self._audit is not None)


def _as(cls, value):
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    return value
