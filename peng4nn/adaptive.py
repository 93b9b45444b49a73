"""The `adaptive` policy: ranking-aware stopping that learns from its own search.

A NAS uses estimates to rank networks, so what matters is not "is this curve's asymptote stable"
(the paper's rule) but "can this network still reach the top x% of its search, and if so, is its
rank known yet". Real training adds learning-rate drops, noisy plateaus and late bloomers, which
one curve's fit cannot foresee; the search's own networks can:

* References. The first `warmup_models` networks of a search, and after them an evenly spread
  audit share (`audit_rate`, thinning as 1/sqrt(n) in long searches), train to e_max whatever
  they show. They are a representative sample of the search, so what they did after each epoch
  is what a new network will do: `peng4nn.predictor` learns, at every epoch, a regression from
  the curve so far (plus the learning-rate drop still to come and the network's size, when known)
  to the final best accuracy, with a conformal interval. It improves as the search grows; its cost
  is counted in the epochs every report shows. Contenders kept to e_max by the rule never train it:
  they were kept for rising late, so they would teach it to expect rises.
* Ranking. A network whose upper bound (one-sided `stop_level`) is below the search's current
  top-x% threshold stops, out of contention; one that could still beat the search's best keeps
  training (regret@1 matters); one clearly inside the top x%, or whose interval is narrower than
  `resolve`, stops with its estimate.
* Flat curves (at chance level now, including curves that rose once and collapsed) are judged
  apart: kept while the search's own history says late bloomers are common (at least
  `min_bloom_rate` of the curves flat at that epoch went on to learn), else stopped after
  `flat_patience` epochs; every `flat_audit`-th flat curve is watched to e_max/2 to find out.
* Before the references can predict an epoch, the curve's own profile-likelihood interval
  (peng4nn/intervals.py) stands in, fitted on the segment since the last learning-rate drop, and
  never calls a network resolved while a known drop is still to come.
* A budget (mean epochs per network, every network counted) is a bank: each network may use the
  budget plus the search's savings (or minus its debt) spread over the next SPREAD_NETWORKS
  networks, and references are bought, spread through the search, only while they take at most
  REFERENCE_SHARE of the epochs the budget leaves above every network's first decision.

Searches are populations: `AdaptivePopulation` holds what one search has learned and is itself the
per-model factory replay asks for (`population(curve) -> AdaptivePolicy`, models in order).
`make_policy("adaptive")` alone gives a single-model policy (no population): it stops when its
nominal interval is narrow and no known drop is ahead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, EstimatorSettings, Reason, StoppingPolicy
from peng4nn.intervals import DEFAULT_NU0, DEFAULT_SIGMA0, CurveInterval, curve_interval
from peng4nn.predictor import (MIN_REFERENCES, FinalPredictor, Prediction, ReferenceCurve, curve_features,
                               feature_rows)
from peng4nn.schedule import DROP_RATIO, RateSchedule, TabulatedSchedule

__all__ = ["AdaptiveSettings", "AdaptivePolicy", "AdaptivePopulation", "CalibratedEstimate", "FinishedNetwork"]

#: A noisy search's estimates are "resolved" at this many noise standard deviations (see `resolve`).
NOISE_RESOLVE = 1.0

#: A network clearly inside the top x% stops once its interval is this many times `resolve` wide (its rank is
#: settled; the estimate still has to be worth reporting).
IN_RESOLVE = 3.0


#: Flat curves are kept this many epochs past the latest bloom the search has seen.
BLOOM_MARGIN = 1.0

#: Points above the flat level a curve must eventually reach for its rise to count as a bloom, not noise.
BLOOM_RISE = 10.0

#: Under a budget, the search's savings (or debt) are spread over this many networks.
SPREAD_NETWORKS = 100

#: Under a budget, the first references are bought on credit that this many networks stopping at their first
#: decision repay.
REPAY_NETWORKS = 20

#: Under a budget, the share of the epochs above every network's first decision that references may take.
REFERENCE_SHARE = 0.5


#: One-sided level of the bound that decides whether a network could still be the search's best: regret@1
#: is judged on one network among all, so its tail must be thinner than the ranking's.
LEADER_LEVEL = 0.99

#: References an epoch's regression needs before its upper bound alone may rule a network out.
TRUSTED_REFERENCES = 20

#: Points (the last ones) whose best decides whether a curve is at chance level now.
FLAT_WINDOW = 2


class AdaptiveSettings(BaseModel):
    """Parameters of the adaptive policy (E, e_max and never_learn come from the estimator settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top: float = Field(20.0, gt=0, le=100, description="Target fraction x (percent) of the search to identify.")
    budget: float | None = Field(
        None,
        gt=0,
        le=1e6,
        allow_inf_nan=False,
        description="Mean epochs per network over the whole search (references included); unspent epochs carry "
        "over to later networks. None: no cap beyond e_max.",
    )
    level: float = Field(0.90, gt=0, lt=1, description="Nominal two-sided coverage of every reported interval.")
    stop_level: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="One-sided confidence that a network is below the top-x% threshold before it is stopped, and "
        "that it cannot beat the search's best before it is ranked.",
    )
    warmup_models: int = Field(
        10, ge=0, le=100_000, description="First networks of a search trained to e_max as references."
    )
    audit_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of the later networks trained to e_max as unbiased references, evenly spread; beyond "
        "1/audit_rate^2 networks it thins as 1/sqrt(n), since each new reference teaches less.",
    )
    min_epochs: float = Field(
        0.0, ge=0, le=1e6, allow_inf_nan=False, description="No decision before this epoch (the fit needs c_min points anyway)."
    )
    resolve: float = Field(
        0.5, ge=0, le=100, description="Stop once the interval's half-width is at most this (points)."
    )
    flat_margin: float = Field(
        3.0, ge=0, le=100,
        description="Points above the never-learn marker a noisy curve may show and still count as flat.",
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
        le=100_000,
        description="Every n-th curve still flat at its first decision is kept for half of e_max, to find out "
        "whether this search has late bloomers (0: never).",
    )
    flat_audits_max: int = Field(
        10,
        ge=0,
        le=100_000,
        description="Audits (curves kept by flat_audit) after which the search stops auditing: by then it has "
        "measured its bloom rate (0: no limit).",
    )
    flat_patience: float = Field(
        2.0,
        ge=0,
        le=1e6,
        allow_inf_nan=False,
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
    #: Whether the search's references made it (else: the curve's own interval).
    calibrated: bool
    fit: CurveInterval | None
    #: A known learning-rate drop lies between this point and e_max.
    drop_ahead: bool = False
    #: Upper bound at stop_level for "could it be the search's best" (None: `upper`). The references' own
    #: bound: the curve's fit, added to `upper` while references are few, is too wide to rank the leaders.
    leader_upper: float | None = None


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
    #: Trained to e_max because it was drawn as a reference (warm-up or audit), not for what it showed.
    reference: bool = False
    #: The learning rate of each point, when known.
    rates: tuple[float, ...] | None = None
    #: log10 parameters, depth, log10 initial rate (None where unknown).
    info: tuple[float | None, float | None, float | None] | None = None

    def to_dict(self) -> dict:
        return {"epochs": list(self.epochs), "accs": list(self.accs), "estimate": self.estimate,
                "epochs_used": self.epochs_used, "full": self.full, "flat_audit_asked": self.flat_audit_asked,
                "reference": self.reference, "rates": list(self.rates) if self.rates is not None else None,
                "info": list(self.info) if self.info is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> "FinishedNetwork":
        rates = data.get("rates")
        info = data.get("info")
        return cls(tuple(map(float, data["epochs"])), tuple(map(float, data["accs"])), float(data["estimate"]),
                   float(data["epochs_used"]), bool(data["full"]), bool(data.get("flat_audit_asked", False)),
                   bool(data.get("reference", False)),
                   tuple(map(float, rates)) if rates is not None else None,
                   tuple(None if v is None else float(v) for v in info) if info is not None else None)


def _epoch_key(epoch: float, E: float) -> int:
    return int(round(epoch / E))


def _contiguous(epochs: np.ndarray, E: float) -> bool:
    """Points at E, 2E, 3E, ... (what the per-epoch regressions index by)."""
    return bool(len(epochs)) and bool(np.all(np.abs(epochs - E * np.arange(1, len(epochs) + 1)) <= 1e-6 * max(E, 1)))


def _drop_left_of(rates: np.ndarray) -> np.ndarray | None:
    """log(rate at each point / rate at the last point) of a full curve: the drop each point had ahead."""
    if rates is None or np.any(rates <= 0):
        return None
    return np.log(rates / rates[-1])


@dataclass
class _Role:
    """What a network was drawn as when it started."""

    reference: bool = False


@dataclass
class _BloomHistory:
    """A curve flat at its first decision: how long it was watched flat, when it bloomed, how high."""

    flat_until: float
    onset: float | None
    best: float


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
        self.predictor = FinalPredictor()
        self.n_finished = 0
        self._sorted_estimates: list[float] = []
        #: Epochs spent by finished networks (what the budget counts: every network).
        self._spent = 0.0
        #: Networks started in this process: concurrent starts must not all draw the same role.
        self._started = 0
        #: References drawn in this process, and references the search has seen finish.
        self._references_drawn = 0
        self._references_finished = 0
        self._flat_histories: list[_BloomHistory] = []
        self._flat_patience = self.settings.flat_patience
        self._flat_seen = 0
        self._reference_sigmas: list[float] = []
        self.sigma0: float = DEFAULT_SIGMA0
        #: The relative schedule the search's references trained with, when they all agree (rate / first rate).
        self._shared_schedule: np.ndarray | None = None
        self._schedule_agrees = True
        #: Where networks finished elsewhere come from (a service sets it): `source(n)` returns the
        #: finished networks after the first n, in arrival order. None: everything is added here.
        self.source: Callable[[int], Iterable[FinishedNetwork]] | None = None

    # -- the factory replay calls ------------------------------------------------------------
    def __call__(self, curve=None, *, reference: bool | None = None) -> "AdaptivePolicy":
        """A policy for the next network of this search (`curve` is only read for its known schedule and
        metadata, never for its points: no peeking). `reference`: the role drawn when the network started,
        for a service rebuilding its policy (None: draw it now). Callers bring the population up to date first
        (a service syncs it from Redis), so the role follows from the networks finished so far."""
        if reference is None:
            position = max(self.n_finished, self._started)
            self._started = position + 1
            reference = self._draws_reference(position)
        policy = AdaptivePolicy(self.settings, estimator=self.estimator, num_classes=self.num_classes,
                                population=self)
        policy.role = _Role(reference=bool(reference))
        schedule = getattr(curve, "schedule", None)
        if schedule is not None:
            policy.schedule = schedule
        info = getattr(curve, "network", None)
        if info is not None:
            policy.network = info
        return policy

    # -- what the policies ask ----------------------------------------------------------------
    @property
    def references(self) -> int:
        return len(self.predictor)

    @property
    def ready(self) -> bool:
        """Enough finished networks to rank against (the warm-up is over)."""
        return self.n_finished >= max(self.settings.warmup_models, 1)

    def threshold(self) -> float:
        """Estimate a newcomer must beat to be in the top x% of the search (itself included)."""
        n = len(self._sorted_estimates)
        k = max(1, math.floor(self.settings.top / 100.0 * (n + 1)))
        return self._sorted_estimates[n - min(k, n)]

    def leader(self) -> float:
        """The best estimate of the search so far."""
        return self._sorted_estimates[-1]

    def first_decision_epoch(self) -> float:
        return max(self.estimator.c_min * self.estimator.E, self.settings.min_epochs)

    def bank(self, epochs: float) -> float:
        """Epochs the budget has left if the current network stopped at `epochs` (inf without a budget)."""
        budget = self.settings.budget
        if budget is None:
            return math.inf
        return budget * (self.n_finished + 1) - self._spent - epochs

    def over_budget(self, epoch: float) -> bool:
        """Whether a (non-reference) network has used its share: the budget plus the search's savings spread over
        the next SPREAD_NETWORKS networks (so no one network takes the whole bank and the ones after it starve),
        or minus its debt spread over the next REPAY_NETWORKS; never before the first decision."""
        budget = self.settings.budget
        if budget is None:
            return False
        saved = budget * self.n_finished - self._spent
        # Savings are spread thin (a contender later may need them); debt is repaid fast (the search may end).
        allowance = max(self.first_decision_epoch(), budget + saved / (SPREAD_NETWORKS if saved > 0 else REPAY_NETWORKS))
        return epoch >= allowance - EPOCH_TOLERANCE

    def _draws_reference(self, position: int) -> bool:
        """The warm-up, then every network where the expected audit count passes a whole number; under a budget,
        whenever the references stay within their share of it (`_budget_allows_reference`)."""
        if self.settings.budget is not None:
            drawn = self._budget_allows_reference(position)
        else:
            in_warmup = position < self.settings.warmup_models
            drawn = in_warmup or math.floor(self._audits_before(position + 1)) > math.floor(
                self._audits_before(position))
        if drawn:
            self._references_drawn = max(self._references_drawn, self._references_finished) + 1
        return drawn

    def _audits_before(self, position: int) -> float:
        """Expected audits among the networks after the warm-up and before `position`."""
        rate, start = self.settings.audit_rate, self.settings.warmup_models
        if position <= start:
            return 0.0
        knee = max(start, 1.0 / (rate * rate))  # from here the rate 1/sqrt(n) is below audit_rate
        if position <= knee:
            return rate * (position - start)
        return rate * (knee - start) + 2.0 * (math.sqrt(position) - math.sqrt(knee))

    def _budget_allows_reference(self, position: int) -> bool:
        """A reference costs e_max where a ranked network could stop at its first decision: it is bought only while
        the references' extra epochs stay within REFERENCE_SHARE of what the budget leaves above that first
        decision, so they are spread through the search instead of front-loaded (a warm-up of ten bought at once
        would leave the next networks starved: on 400 SVHN networks a budget of 5 then ranked worse than 4)."""
        slack = self.settings.budget - self.first_decision_epoch()
        extra = self.estimator.e_max - self.first_decision_epoch()
        drawn = max(self._references_drawn, self._references_finished)
        if slack <= 0:
            return False
        if drawn < min(self.settings.warmup_models, MIN_REFERENCES):
            # The first few are bought at once, on credit the next REPAY_NETWORKS networks repay: until the
            # regression exists estimates are the best seen, and a ranking that mixes those with predictions
            # of the final favours the later networks.
            return self.bank(self.estimator.e_max) >= -slack * REPAY_NETWORKS
        return (drawn + 1) * extra <= REFERENCE_SHARE * slack * (position + 1)

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

    def drop_left(self, schedule: RateSchedule | None, rates: list[float | None], epoch: float) -> float | None:
        """log(rate now / rate at e_max) for a network: from its schedule when known in advance, else from the
        schedule every reference shared, when the network reports rates and follows it so far."""
        e_max = self.estimator.e_max
        if schedule is not None:
            now, end = schedule.rate_at(epoch), schedule.rate_at(e_max)
            return math.log(now / end) if now > 0 and end > 0 else None
        shared = self._shared_schedule
        if shared is None or not self._schedule_agrees or not rates or any(r is None or r <= 0 for r in rates):
            return None
        k = len(rates)
        if k > len(shared):
            return None
        relative = np.asarray(rates, dtype=float) / rates[0]
        if not np.allclose(relative, shared[:k], rtol=1e-3):
            return None
        return float(math.log(shared[k - 1] / shared[-1]))

    # -- learning ------------------------------------------------------------------------------
    def add(self, network: FinishedNetwork) -> None:
        """Learn from one finished network (in arrival order)."""
        self.n_finished += 1
        self._flat_seen += int(network.flat_audit_asked)
        bisect.insort(self._sorted_estimates, network.estimate)
        self._spent += network.epochs_used
        epochs = np.array(network.epochs, dtype=float)
        accs = np.array(network.accs, dtype=float)
        self._note_bloom(epochs, accs)
        self._references_finished += int(network.reference)
        if network.reference and network.full and _contiguous(epochs, self.estimator.E):
            self._add_reference(network, epochs, accs)

    def _add_reference(self, network: FinishedNetwork, epochs: np.ndarray, accs: np.ndarray) -> None:
        rates = np.array(network.rates, dtype=float) if network.rates is not None else None
        if rates is not None and len(rates) == len(accs) and np.all(rates > 0):
            relative = rates / rates[0]
            if self._shared_schedule is None:
                self._shared_schedule = relative
            elif len(relative) != len(self._shared_schedule) or not np.allclose(relative, self._shared_schedule,
                                                                                rtol=1e-3):
                self._schedule_agrees = False
        else:
            rates = None
        info = network.info or (None, None, None)
        starts = _segment_starts(TabulatedSchedule(epochs, rates) if rates is not None else None, epochs, accs,
                                 self.flat_level)
        rows = feature_rows(epochs, accs, self.estimator.e_max, starts)
        self.predictor.add(ReferenceCurve(rows, float(accs.max()), _drop_left_of(rates), tuple(info)))
        ci = curve_interval(epochs, accs, self.estimator.e_max, level=self.settings.level, nu0=0.0)
        if ci is not None:
            bisect.insort(self._reference_sigmas, ci.sigma)
            self.sigma0 = max(self._reference_sigmas[len(self._reference_sigmas) // 2], 0.05)

    def _note_bloom(self, epochs: np.ndarray, accs: np.ndarray) -> None:
        first = max(self.estimator.c_min, 3) - 1
        if len(accs) <= first or _recent_best(accs[: first + 1]) > self.flat_level:
            return
        after = np.arange(len(accs)) > first
        learned = np.nonzero(after & (accs > self.flat_level))[0]
        if accs[first + 1:].max(initial=0.0) < self.flat_level + BLOOM_RISE or not len(learned):
            self._flat_histories.append(_BloomHistory(float(epochs[-1]), None, float(accs.max())))
            return
        onset = float(epochs[learned[0]])
        self._flat_histories.append(_BloomHistory(onset - self.estimator.E, onset, float(accs.max())))
        self._flat_patience = self._patience_from_blooms()

    def _patience_from_blooms(self) -> float:
        """The latest bloom onset o such that, of the curves seen still flat just before o, (about) at least
        min_bloom_rate bloomed at o or later: waiting longer is not worth its epochs.

        Every bloom counts, not only those into the top x%: a bloomer cut at chance level is reported at
        chance, tens of points below what it reaches, and the search is told its estimates are predictions."""
        E = self.estimator.E
        blooms = sorted((h.onset for h in self._flat_histories if h.onset is not None), reverse=True)
        if not blooms:
            return self.settings.flat_patience
        watched_until = np.sort([h.flat_until for h in self._flat_histories])
        for i, o in enumerate(blooms):
            watched = len(watched_until) - int(np.searchsorted(watched_until, o - E - EPOCH_TOLERANCE, side="left"))
            later = i + 1
            # Laplace's rule of succession: with few curves watched, lean towards waiting (a bloomer cut
            # at chance level is never seen again, so an early low count is weak evidence).
            if (later + 1) / (watched + 2) >= self.settings.min_bloom_rate:
                return min(max(self.settings.flat_patience, o + BLOOM_MARGIN), self.estimator.e_max)
        return self.settings.flat_patience


def _segment_starts(schedule: RateSchedule | None, epochs: np.ndarray, accs: np.ndarray,
                    flat_level: float) -> list[int]:
    """For each prefix of the curve, where the part the paper's family can describe begins: after the last
    learning-rate drop so far, and from the last point still at chance level (a late bloomer's bloom)."""
    starts, start = [], 0
    for i in range(len(epochs)):
        if i and schedule is not None:
            before, now = schedule.rate_at(epochs[i - 1]), schedule.rate_at(epochs[i])
            if before > 0 and now <= DROP_RATIO * before:
                start = i
        if accs[i] <= flat_level:
            start = i
        starts.append(start)
    return starts


def _recent_best(accs: np.ndarray) -> float:
    return float(np.max(accs[-FLAT_WINDOW:]))


def nominal_estimate(epochs, accs, e_max: float, level: float, sigma0: float,
                     stop_level: float | None = None) -> CalibratedEstimate | None:
    """The curve's own interval turned into one for the best accuracy up to e_max (uncalibrated)."""
    ci = curve_interval(epochs, accs, e_max, level=level, sigma0=sigma0, nu0=DEFAULT_NU0, ceiling=100.0)
    if ci is None:
        return None
    best = float(np.max(accs))
    upper = ci.hi
    if stop_level is not None and stop_level > 1 - (1 - level) / 2:
        wide = curve_interval(epochs, accs, e_max, level=2 * stop_level - 1, sigma0=sigma0, nu0=DEFAULT_NU0,
                              ceiling=100.0)
        upper = wide.hi if wide is not None else ci.hi

    def clip(v: float) -> float:
        return min(max(v, best), 100.0)

    return CalibratedEstimate(clip(ci.estimate), clip(ci.lo), clip(ci.hi), clip(upper), False, ci)


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
        self.role = _Role()
        #: Whether this flat curve was chosen to be watched for late blooming (None: not asked yet).
        self._audit: bool | None = None
        self._finished = False

    # -- estimation ----------------------------------------------------------------------------
    def _schedule(self) -> RateSchedule | None:
        """The schedule known in advance, else None (rates reported so far only tell the past)."""
        return self.schedule

    def _segment_start(self, epochs: np.ndarray, accs: np.ndarray) -> int:
        """Index of the first point of the current segment (see `_segment_starts`)."""
        schedule = self._schedule()
        if schedule is None:
            rates = [p.lr for p in self.history.points[-len(epochs):]]
            if rates and all(r is not None for r in rates):
                schedule = TabulatedSchedule(epochs, rates)
        return _segment_starts(schedule, epochs, accs, self.flat_level)[-1]

    def _drop_ahead(self, epoch: float) -> bool:
        schedule = self._schedule()
        if schedule is None:
            return False
        now = schedule.rate_at(epoch)
        return schedule.rate_at(self.e_max) <= DROP_RATIO * now if now > 0 else False

    def estimate_now(self) -> CalibratedEstimate | None:
        """Estimate of the best accuracy up to e_max from the points so far, calibrated when the search allows."""
        h = self.history
        if len(h.points) < max(self.estimator.c_min, 3):
            return None
        pop = self.population
        sigma0 = pop.sigma0 if pop is not None else DEFAULT_SIGMA0
        epochs, accs = h.epochs(), h.accuracies()
        best = float(h.best_accuracy())
        drop_ahead = self._drop_ahead(float(h.points[-1].epoch))
        # The curve's own fit describes the segment since the last drop or the bloom (a flat prefix says
        # nothing about the shape of what follows); the references' regression reads the whole curve.
        start = self._segment_start(epochs, accs)
        seg_epochs, seg_accs = (epochs[start:], accs[start:]) if len(epochs) - start >= 3 else (epochs, accs)
        s = self.settings
        raw = nominal_estimate(seg_epochs, seg_accs, self.e_max, s.level, sigma0, s.stop_level)
        if raw is not None:
            # Uncalibrated, the point estimate is the best seen: a fit through a few early points ranks
            # networks worse than what they already showed (SVHN: overlap@20% 0.35 against 0.71 at epoch 3).
            raw = CalibratedEstimate(best, max(raw.lo, best), max(raw.hi, best),
                                     max(raw.upper, best), False, raw.fit, drop_ahead)
        if self.is_flat():
            # At chance level the estimate is what was seen: a fit through noise around chance can
            # extrapolate anywhere. The interval keeps the fit's upper end: whether it will learn is
            # exactly what is unknown.
            if raw is None:
                return None
            return CalibratedEstimate(best, best, raw.hi, raw.upper, False, raw.fit, drop_ahead)
        prediction = self._predict(epochs, accs, start) if pop is not None else None
        if prediction is None:
            return raw
        alpha = 1.0 - s.level
        lo = max(prediction.quantile(alpha / 2), best)
        hi = max(prediction.quantile(1 - alpha / 2), best)
        upper = max(prediction.quantile(s.stop_level), best)
        leader_upper = max(prediction.quantile(LEADER_LEVEL), best)
        if prediction.n_references < TRUSTED_REFERENCES and raw is not None:
            # Few references cannot show every shape (a slow learner among fast ones): what the curve's own
            # fit says it could still reach bounds the regression's optimism.
            upper = max(upper, raw.upper)
            leader_upper = max(leader_upper, raw.upper)
        estimate = min(max(prediction.estimate, lo), hi)
        return CalibratedEstimate(estimate, lo, max(hi, upper), upper, True, raw.fit if raw else None, drop_ahead,
                                  leader_upper)

    def _predict(self, epochs: np.ndarray, accs: np.ndarray, segment_start: int) -> Prediction | None:
        pop = self.population
        if pop is None or pop.references == 0:
            return None
        k = _epoch_key(float(epochs[-1]), self.E)
        rates = [p.lr for p in self.history.points]
        drop_left = pop.drop_left(self._schedule(), rates, float(self.history.points[-1].epoch))
        info = self.network.features() if self.network is not None else None
        features = curve_features(epochs, accs, self.e_max, segment_start)
        return pop.predictor.predict(k, features, float(accs.max()), drop_left, info)

    def is_flat(self) -> bool:
        """At chance level now (within the noise margin): maybe a never-learner, maybe a late bloomer.
        Judged on the last points, so a curve that rose once and collapsed counts as flat."""
        recent = self.history.points[-FLAT_WINDOW:]
        return max(p.val_acc for p in recent) <= self.flat_level

    # -- the rule ------------------------------------------------------------------------------
    def _decide(self, epoch: float) -> Decision:
        if self.final is not None:  # already stopped: the base class repeats the first stop
            return self._decision(epoch, self.last_estimate, self.final.reason, stop=True)
        pop = self.population
        if pop is not None:
            pop.refresh()
        best = self.history.best_accuracy()
        if epoch >= self.e_max - EPOCH_TOLERANCE:
            return Decision(epoch, best, None, None, None, False, True, best, Reason.MAX_EPOCHS, (best, best))
        est = self.estimate_now()
        self.last_estimate = est
        if est is None:
            return self._decision(epoch, None, Reason.TOO_FEW_POINTS)
        if epoch < self.settings.min_epochs - EPOCH_TOLERANCE:
            return self._decision(epoch, est, Reason.WARMING_UP)
        if pop is None:
            if self.is_flat():
                if epoch >= self.settings.flat_patience - EPOCH_TOLERANCE:
                    return self._decision(epoch, est, Reason.OUT_OF_CONTENTION, stop=True)  # never learned
                return self._decision(epoch, est, Reason.UNSTABLE)
            return self._decide_alone(epoch, est)
        if self.role.reference:
            return self._decision(epoch, est, Reason.REFERENCE)
        if not pop.ready:
            if pop.over_budget(epoch):
                return self._decision(epoch, est, Reason.BUDGET_REACHED, stop=True)
            return self._decision(epoch, est, Reason.WARMING_UP)
        if self.is_flat():
            return self._decide_flat(epoch, est, pop)
        return self._decide_in_population(epoch, est, pop)

    def _decide_flat(self, epoch: float, est: CalibratedEstimate, pop: AdaptivePopulation) -> Decision:
        if self._audit is None:
            self._audit = pop.next_flat_is_audit()
        patience = self.e_max / 2 if self._audit else pop.flat_patience()
        if pop.over_budget(epoch):
            return self._decision(epoch, est, Reason.BUDGET_REACHED, stop=True)
        if epoch >= patience - EPOCH_TOLERANCE:
            return self._decision(epoch, est, Reason.OUT_OF_CONTENTION, stop=True)  # never learned
        return self._decision(epoch, est, Reason.UNSTABLE)  # maybe a late bloomer

    def _slow_starters_win(self, epoch: float, threshold: float, pop: AdaptivePopulation) -> bool:
        """Whether references that looked no better than this network at this epoch reached the threshold too
        often to rule it out (a share of at least 1 - stop_level)."""
        n, hits = pop.predictor.dominated(_epoch_key(epoch, self.E), self.history.best_accuracy(), threshold)
        return hits > 0 and hits / n >= 1.0 - self.settings.stop_level

    def _decide_alone(self, epoch: float, est: CalibratedEstimate) -> Decision:
        """Without a population: stop once the estimate is known to within `resolve` points and no known
        learning-rate drop is ahead (nothing tells what the drop will add)."""
        if est.drop_ahead or est.hi - est.lo > 2 * self.settings.resolve + 1e-12:
            return self._decision(epoch, est, Reason.UNSTABLE)
        return self._decision(epoch, est, Reason.CONVERGED, stop=True, converged=True)

    def _decide_in_population(self, epoch: float, est: CalibratedEstimate, pop: AdaptivePopulation) -> Decision:
        s = self.settings
        threshold = pop.threshold()
        if est.upper < threshold and (est.calibrated or not est.drop_ahead) and not self._slow_starters_win(
                epoch, threshold, pop):
            return self._decision(epoch, est, Reason.OUT_OF_CONTENTION, stop=True)
        if pop.over_budget(epoch):
            return self._decision(epoch, est, Reason.BUDGET_REACHED, stop=True)
        if (est.leader_upper if est.leader_upper is not None else est.upper) >= pop.leader():
            return self._decision(epoch, est, Reason.UNSTABLE)  # could be the best of the search
        # The curve's own interval is no finer than the validation noise; the references' already include it.
        resolve = s.resolve if est.calibrated else max(s.resolve, NOISE_RESOLVE * pop.sigma0)
        settled = est.calibrated or not est.drop_ahead  # an uncalibrated fit cannot see past a drop
        # Clearly in the top x%: its rank is settled, and its estimate is close enough to report.
        inside = est.lo >= threshold and est.hi - est.lo <= 2 * IN_RESOLVE * resolve + 1e-12
        if settled and (inside or est.hi - est.lo <= 2 * resolve + 1e-12):
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
            estimate=(est.estimate if est else self.history.best_accuracy()) if stop else None,
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
        rates = tuple(p.lr for p in pts) if all(p.lr is not None for p in pts) else None
        if rates is None and self.schedule is not None:
            rates = tuple(float(self.schedule.rate_at(p.epoch)) for p in pts)
        info = self.network.features() if self.network is not None else None
        return FinishedNetwork(tuple(p.epoch for p in pts), tuple(p.val_acc for p in pts), float(estimate),
                               float(stop_epoch), bool(full), self._audit is not None,
                               bool(self.role.reference and full), rates, info)


def _as(cls, value):
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    return value
