"""The search's own predictor of a network's final accuracy from its curve so far.

A curve fit extrapolates one network's points, but it cannot know what a learning-rate drop
will add, and real searches' point estimates from it sit near the best accuracy seen. The
networks of one search that were trained to e_max (its *references*) can tell: at every epoch
k, a ridge regression from what a curve showed up to k (and, when known, its remaining
learning-rate drop and its size, depth and initial rate) to its final best accuracy. The
references share the search's schedule, so the regression at k learns what the drops after k
add, as a function of what came before (Baker et al. 2018 used the same features).

Accuracies enter in logit space: they are bounded, and a point near 95% moves far less than
one near 60%, so logits make the residuals comparable across the table. The interval is
conformal: leave-one-out residuals of the ridge (closed form), taken from the references whose
leave-one-out prediction is nearest to the new network's (residuals of weak networks are wider
than those of the leaders), with a Student-t tail when too few references are near.

Only *unbiased* references may train it: networks trained to e_max because they were chosen
at random (the warm-up and the audits, see adaptive.py), never the contenders a policy chose to
keep, whose late rises are why they were kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from peng4nn.intervals import curve_interval

__all__ = ["FinalPredictor", "Prediction", "ReferenceCurve", "curve_features", "feature_rows", "logit", "expit"]

#: References an epoch needs before its regression is trusted (below: the caller's fallback).
MIN_REFERENCES = 6

#: Share of the references (by nearness of prediction) whose residuals give a network's interval.
LOCAL_SHARE = 1.0 / 3.0
#: Fewest references an interval is taken from: below this many, all of them (a few near neighbours
#: make an optimistic interval for an unusual curve, such as a slow learner among fast ones).
MIN_LOCAL = 24

#: Ridge penalties tried (on standardised features); the one with the smallest leave-one-out error wins.
PENALTIES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

#: Accuracies are clipped to [EDGE, 100 - EDGE] percent before the logit.
EDGE = 0.05

#: Points of the recent window (mean and change over it).
WINDOW = 3


def logit(acc):
    p = np.clip(np.asarray(acc, dtype=float), EDGE, 100.0 - EDGE) / 100.0
    return np.log(p / (1.0 - p))


def expit(z):
    return 100.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=float), -50.0, 50.0)))


def curve_features(epochs: np.ndarray, accs: np.ndarray, e_max: float, segment_start: int = 0) -> np.ndarray:
    """What the curve showed so far, in logits: last point, best, recent mean, recent change, and where the
    paper's curve family fitted to the current segment (since the last learning-rate drop) puts e_max.

    The fit carries what a linear model of the other features cannot: a slow learner still rising
    steeply and a fast one that has levelled off can sit at the same point."""
    z = logit(accs)
    w = min(WINDOW, len(z))
    best = float(accs.max())
    zb = float(logit(best))
    seg = segment_start if len(accs) - segment_start >= 3 else 0
    ci = curve_interval(epochs[seg:], accs[seg:], e_max, ceiling=100.0) if len(accs) - seg >= 3 else None
    fitted = min(max(ci.estimate, best), 100.0) if ci is not None else best
    # How rough the curve is lately: on a noisy plateau the best keeps creeping up by chance alone.
    r = min(ROUGH_WINDOW, len(z))
    rough = float(np.abs(np.diff(z[-r:])).mean()) if r > 1 else 0.0
    # Relative to the best so far (the target is the gain over it), so a network better than every
    # reference is not an extrapolation; the level itself comes last.
    return np.array([z[-1] - zb, z[-w:].mean() - zb, z[-1] - z[-w], float(logit(fitted)) - zb, rough, zb])


#: Index of logit(best so far) in `curve_features`.
BEST = 5

#: Points over which the roughness (mean absolute step, logits) is measured.
ROUGH_WINDOW = 6


def feature_rows(epochs: np.ndarray, accs: np.ndarray, e_max: float, segment_starts: list[int]) -> np.ndarray:
    """`curve_features` of every prefix of a curve (row k-1: the first k points)."""
    return np.array([curve_features(epochs[:k], accs[:k], e_max, segment_starts[k - 1])
                     for k in range(1, len(accs) + 1)])


@dataclass(frozen=True)
class ReferenceCurve:
    """A network trained to e_max, as the predictor learns from it."""

    #: `feature_rows` of the curve: row k-1 holds what its first k points showed.
    rows: np.ndarray
    final: float
    #: log(rate at each point / rate at e_max): the drop still to come, per point (None: unknown).
    drop_left: np.ndarray | None
    #: log10 parameters, depth, log10 initial rate (None where unknown).
    info: tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class Prediction:
    """Final best accuracy of a network (percent): estimate and conformal quantiles."""

    estimate: float
    #: logit of the best accuracy so far; the model predicts the gain over it (never negative).
    base: float
    #: Predicted gain (logit) and the residuals around it, for any level via `quantile`.
    center: float
    residuals: np.ndarray
    n_references: int

    def quantile(self, q: float) -> float:
        """The q-quantile of the final best accuracy (percent)."""
        return float(expit(self.base + max(0.0, self.center + _residual_quantile(self.residuals, q))))


def _residual_quantile(sorted_res: np.ndarray, q: float) -> float:
    """Split-conformal quantile where there are enough residuals, a Student-t tail where there are not.

    Conformal takes the ceil((m+1)q)-th smallest of m residuals, which does not exist for a high q
    and few residuals; the t tail on their mean and spread stands in, and where both exist the
    farther one is used (few residuals make either optimistic)."""
    m = len(sorted_res)
    mean = float(sorted_res.mean())
    sd = float(sorted_res.std(ddof=1)) if m > 1 else 0.0
    t = _t_quantile(q, max(m - 1, 1)) * sd * math.sqrt(1.0 + 1.0 / m)
    parametric = mean + t
    k = math.ceil((m + 1) * q) if q >= 0.5 else math.floor((m + 1) * q)
    if 1 <= k <= m:
        empirical = float(sorted_res[k - 1])
        return max(empirical, parametric) if q >= 0.5 else min(empirical, parametric)
    return parametric


_T_CACHE: dict[tuple[float, int], float] = {}


def _t_quantile(q: float, dof: int) -> float:
    key = (q, dof)
    value = _T_CACHE.get(key)
    if value is None:
        from scipy.stats import t as t_dist

        value = _T_CACHE[key] = float(t_dist.ppf(q, dof))
    return value


class _EpochModel:
    """Ridge regression of final logit on the features at one epoch, with leave-one-out residuals."""

    def __init__(self, X: np.ndarray, y: np.ndarray, offsets: np.ndarray | None = None):
        n, p = X.shape
        self.mu = X.mean(axis=0)
        #: What the references showed: a new curve's features are held inside it (a linear model far outside
        #: its data extrapolates without bound, e.g. a steep start read as a gain to 100%).
        self.lo, self.hi = X.min(axis=0), X.max(axis=0)
        sd = X.std(axis=0)
        self.used = sd > 1e-9  # a feature constant over the references says nothing
        self.sd = np.where(self.used, sd, 1.0)
        Z = (X - self.mu) / self.sd * self.used
        self.ym = float(y.mean())
        yc = y - self.ym
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        Uy = U.T @ yc
        best = None
        for lam in PENALTIES:
            shrink = s * s / (s * s + lam)
            fitted = U @ (shrink * Uy)
            hat = (U * U) @ shrink + 1.0 / n
            loo = (yc - fitted) / np.maximum(1.0 - hat, 1e-3)
            score = float(loo @ loo)
            if best is None or score < best[0]:
                coef = Vt.T @ (s / (s * s + lam) * Uy)
                best = (score, coef, loo)
        _, self.coef, loo = best
        self.loo = loo
        #: Each reference's leave-one-out prediction of its final (logit): where its residual belongs.
        self.loo_prediction = y - loo + (offsets if offsets is not None else 0.0)
        self.n = n

    def predict(self, x: np.ndarray) -> float:
        x = np.clip(x, self.lo, self.hi)
        return float(((x - self.mu) / self.sd * self.used) @ self.coef + self.ym)

    def residuals_near(self, center: float) -> np.ndarray:
        k = min(self.n, max(MIN_LOCAL, math.ceil(LOCAL_SHARE * self.n)))
        nearest = np.argsort(np.abs(self.loo_prediction - center), kind="stable")[:k]
        return np.sort(self.loo[nearest])


class FinalPredictor:
    """References of one search and the per-epoch regressions they train (refit lazily as they grow)."""

    def __init__(self) -> None:
        self.references: list[ReferenceCurve] = []
        self._models: dict[tuple, _EpochModel | None] = {}

    def add(self, reference: ReferenceCurve) -> None:
        self.references.append(reference)
        self._models.clear()

    def __len__(self) -> int:
        return len(self.references)

    def predict(self, k: int, features: np.ndarray, best: float, drop_left: float | None,
                info: tuple[float | None, float | None, float | None] | None) -> Prediction | None:
        """Prediction for a curve at its k-th decision point (epoch k E) from its `curve_features` and the best
        accuracy it showed; None when fewer than MIN_REFERENCES references reach that far with the same inputs."""
        use_drop = drop_left is not None
        info = info or (None, None, None)
        mask = tuple(v is not None for v in info)
        model = self._model(k, use_drop, mask)
        if model is None:
            return None
        x = _row(features, drop_left if use_drop else None, info, mask)
        center = model.predict(x)
        base = float(features[BEST])
        # Residuals of the references predicted to end nearest to this network (similar quality).
        residuals = model.residuals_near(base + center)
        estimate = float(expit(base + max(0.0, center + float(np.median(residuals)))))
        return Prediction(estimate, base, center, residuals, model.n)

    def dominated(self, k: int, best: float, threshold: float) -> tuple[int, int]:
        """Among references that looked no better at their k-th point (best so far at most `best`): how many,
        and how many of them went on to reach `threshold`. Model-free: the regression's Gaussian-like tail
        cannot see that a few slow starters end at the top."""
        z = float(logit(best))
        n = hits = 0
        for ref in self.references:
            if len(ref.rows) >= k and ref.rows[k - 1][BEST] <= z + 1e-12:
                n += 1
                hits += ref.final >= threshold
        return n, hits

    def _model(self, k: int, use_drop: bool, mask: tuple[bool, ...]) -> _EpochModel | None:
        key = (k, use_drop, mask)
        if key in self._models:
            return self._models[key]
        rows, finals = [], []
        for ref in self.references:
            if len(ref.rows) < k or (use_drop and ref.drop_left is None):
                continue
            if any(m and v is None for m, v in zip(mask, ref.info)):
                continue
            rows.append(_row(ref.rows[k - 1], ref.drop_left[k - 1] if use_drop else None, ref.info, mask))
            finals.append(ref.final)
        model = None
        if len(rows) >= MIN_REFERENCES:
            X = np.array(rows)
            model = _EpochModel(X, logit(np.array(finals)) - X[:, BEST], X[:, BEST])
        self._models[key] = model
        return model


def _row(curve: np.ndarray, drop_left: float | None, info, mask) -> np.ndarray:
    extra = [drop_left] if drop_left is not None else []
    extra += [v for m, v in zip(mask, info) if m]
    return np.concatenate([curve, np.asarray(extra, dtype=float)]) if extra else curve
