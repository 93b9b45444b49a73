"""The core accuracy predictive function f(x) = a - b^(c - x) and its fitting back-ends (Algorithm 1).

Epochs are rescaled so the first observed epoch is x = 1 (the paper multiplies by 1/E);
the fitted b and c are in those rescaled units. Both back-ends solve the same bounded
least-squares problem with the paper's bounds 0.5 <= a <= 102.5, b >= 1, c >= 0:

* ``scipy``: ``scipy.optimize.curve_fit`` from the paper's initial values, the reference.
* ``fast``: an exact solver. With lambda = ln b >= 0 and K = b^c >= 1 the model is
  f = a - K e^(-lambda x), linear in (a, K) for a fixed lambda (separable least squares),
  so the search is over one variable: a vectorised grid over lambda, then zoomed grids
  around the best point. For each lambda the bounded 2-variable problem is a convex
  quadratic solved in closed form on the interior and on each active bound.

Failure is a typed result (`FitFailed`), never an exception or an ``inf`` sentinel.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

#: Bounds and initial values of Algorithm 1 (paper Section III-B2).
A_MIN, A_MAX = 0.5, 102.5
B_MIN = 1.0
C_MIN = 0.0
INITIAL_ABC = (10.0, 1.001, 100.0)

#: Fewest points a fit is attempted on (the paper's C_min for a 3-parameter function).
MIN_POINTS = 3

BackendName = Literal["fast", "scipy"]
BACKEND_NAMES: tuple[str, ...] = ("fast", "scipy")


def predictive_function(x, a: float, b: float, c: float):
    """f(x) = a - b^(c - x), the paper's accuracy model (x in rescaled epochs)."""
    return a - np.power(b, c - np.asarray(x, dtype=float))


@dataclass(frozen=True)
class CurveFit:
    """A successful fit: parameters in rescaled epoch units and the sum of squared residuals."""

    a: float
    b: float
    c: float
    ssr: float
    n_points: int
    backend: str
    #: Epoch that maps to x = 1 (the first observed epoch); x = epoch / x_scale.
    x_scale: float = 1.0

    ok = True

    def predict(self, epochs) -> np.ndarray:
        """Accuracy the fitted curve gives at these (unscaled) epochs."""
        return predictive_function(np.asarray(epochs, dtype=float) / self.x_scale, self.a, self.b, self.c)


@dataclass(frozen=True)
class FitFailed:
    """The back-end could not fit these points; `reason` says why."""

    reason: str
    n_points: int
    backend: str

    ok = False


FitResult = CurveFit | FitFailed


class FitBackend(Protocol):
    name: str

    def fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | str:
        """Fit rescaled x (first point 1) to y; return (a, b, c) or a failure reason."""


def rescale_epochs(epochs: np.ndarray) -> tuple[np.ndarray, float]:
    """Rescale so the first observed epoch is 1 (Algorithm 1, line 5)."""
    scale = float(epochs[0])
    return epochs / scale, scale


def sum_squared_residuals(x, y, a: float, b: float, c: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.asarray(y, dtype=float) - predictive_function(x, a, b, c)
    value = float(np.dot(r, r))
    return value if math.isfinite(value) else math.inf


def fit_curve(epochs, accuracies, backend: BackendName = "fast") -> FitResult:
    """Fit f to a validation curve (epochs > 0 increasing, accuracy in percent)."""
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(accuracies, dtype=float)
    fitter = get_backend(backend)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"epochs and accuracies must be 1-D of equal length; got {x.shape} and {y.shape}")
    failed = _checked(x, y, fitter.name)
    if failed is not None:
        return failed
    xs, scale = rescale_epochs(x)
    result = fitter.fit(xs, y)
    if isinstance(result, str):
        return FitFailed(result, len(x), fitter.name)
    a, b, c = result
    return CurveFit(a, b, c, sum_squared_residuals(xs, y, a, b, c), len(x), fitter.name, scale)


def _checked(x: np.ndarray, y: np.ndarray, backend: str) -> FitFailed | None:
    if len(x) < MIN_POINTS:
        return FitFailed(f"needs at least {MIN_POINTS} points, got {len(x)}", len(x), backend)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return FitFailed("non-finite epoch or accuracy", len(x), backend)
    if x[0] <= 0 or (x[1:] <= x[:-1]).any():
        return FitFailed("epochs must be positive and strictly increasing", len(x), backend)
    return None


def fit_prefixes(epochs, accuracies, lengths, backend: BackendName = "fast") -> list[FitResult]:
    """Fit the first `length` points of one curve for each length: what `fit_curve` gives each prefix.

    The `fast` back-end fits all prefixes in one batch (a few times the cost of one fit);
    `scipy` fits them one by one.
    """
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(accuracies, dtype=float)
    fitter = get_backend(backend)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"epochs and accuracies must be 1-D of equal length; got {x.shape} and {y.shape}")
    lengths = [int(n) for n in lengths]
    if any(not 1 <= n <= len(x) for n in lengths):
        raise ValueError(f"every length must be in [1, {len(x)}]; got {lengths}")
    if not isinstance(fitter, FastBackend):
        return [fit_curve(x[:n], y[:n], backend) for n in lengths]
    results: list[FitResult | None] = [None] * len(lengths)
    batch = []
    whole_ok = _checked(x[: max(lengths, default=0)], y[: max(lengths, default=0)], fitter.name) is None
    for i, n in enumerate(lengths):
        failed = _checked(x[:n], y[:n], fitter.name) if n < MIN_POINTS or not whole_ok else None
        if failed is not None:
            results[i] = failed
        else:
            batch.append(i)
    if batch:
        xs, scale = rescale_epochs(x)
        counts = np.array([lengths[i] for i in batch])
        a, b, c = fitter.fit_prefixes(xs, y, counts)
        n_max = int(counts.max())
        with np.errstate(all="ignore"):
            r = y[None, :n_max] - predictive_function(xs[None, :n_max], a[:, None], b[:, None], c[:, None])
            ssr = np.add.reduce(np.where(np.arange(n_max) < counts[:, None], r * r, 0.0), axis=1)
        ssr[~np.isfinite(ssr)] = np.inf
        for j, i in enumerate(batch):
            results[i] = CurveFit(float(a[j]), float(b[j]), float(c[j]), float(ssr[j]), lengths[i], fitter.name, scale)
    return results  # type: ignore[return-value]


def fit_many(curves, backend: BackendName = "fast") -> list[FitResult]:
    """Fit several independent curves ``[(epochs, accuracies), ...]``: what `fit_curve` gives each.

    The `fast` back-end fits them all with one set of array operations (the observe API
    fits the points that arrive together this way: a batch of 16 costs a few single fits),
    with bit-identical parameters; `scipy` fits them one by one.
    """
    fitter = get_backend(backend)
    data = []
    for epochs, accuracies in curves:
        x = np.asarray(epochs, dtype=float)
        y = np.asarray(accuracies, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"epochs and accuracies must be 1-D of equal length; got {x.shape} and {y.shape}")
        data.append((x, y))
    if not isinstance(fitter, FastBackend):
        return [fit_curve(x, y, backend) for x, y in data]
    results: list[FitResult | None] = [_checked(x, y, fitter.name) for x, y in data]
    batch = [i for i, failed in enumerate(results) if failed is None]
    if batch:
        scaled = [rescale_epochs(data[i][0]) for i in batch]
        a, b, c = fitter.fit_curves([xs for xs, _ in scaled], [data[i][1] for i in batch])
        for j, i in enumerate(batch):
            (xs, scale), y = scaled[j], data[i][1]
            aj, bj, cj = float(a[j]), float(b[j]), float(c[j])
            results[i] = CurveFit(aj, bj, cj, sum_squared_residuals(xs, y, aj, bj, cj), len(y), fitter.name, scale)
    return results  # type: ignore[return-value]


class PrefixFitCache:
    """The fits of every prefix of one known curve, computed in batches as they are asked for.

    Replay knows each recorded curve in advance; the analyzer still asks for the fit of
    exactly the points it has seen (`lookup` checks them), so it never sees the future,
    but the fits cost a batch per few points instead of one fit per point.
    """

    def __init__(self, epochs, accuracies, backend: BackendName = "fast"):
        self.epochs = np.asarray(epochs, dtype=float)
        self.accuracies = np.asarray(accuracies, dtype=float)
        self.backend = get_backend(backend).name
        self._fits: dict[int, FitResult] = {}

    def lookup(self, epochs, accuracies) -> FitResult | None:
        """The fit of these points if they are a prefix of the cached curve, else None."""
        n = len(epochs)
        if n > len(self.epochs) or not (
            np.array_equal(self.epochs[:n], epochs) and np.array_equal(self.accuracies[:n], accuracies)
        ):
            return None
        fit = self._fits.get(n)
        if fit is None:
            # Batch from n on: a batch costs little more than one fit, and the next points are likely asked next.
            upto = min(len(self.epochs), 2 * n + 4)
            lengths = range(n, upto + 1)
            self._fits.update(zip(lengths, fit_prefixes(self.epochs, self.accuracies, lengths, self.backend)))
            fit = self._fits[n]
        return fit


#: Function evaluations curve_fit may spend on one fit.
SCIPY_MAX_EVALUATIONS = 20_000


class ScipyBackend:
    """`scipy.optimize.curve_fit` exactly as the paper uses it: its bounds and initial values."""

    name = "scipy"

    def fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | str:
        from scipy.optimize import OptimizeWarning, curve_fit

        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                popt, _ = curve_fit(
                    predictive_function,
                    x,
                    y,
                    p0=INITIAL_ABC,
                    bounds=([A_MIN, B_MIN, C_MIN], [A_MAX, np.inf, np.inf]),
                    # The authors' SciPy converged where today's default budget (100 evaluations per
                    # parameter) gives up on the sample's never-learner; this many lets it finish.
                    max_nfev=SCIPY_MAX_EVALUATIONS,
                )
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            return f"curve_fit failed: {exc}"
        a, b, c = (float(v) for v in popt)
        if not all(math.isfinite(v) for v in (a, b, c)):
            return "curve_fit returned non-finite parameters"
        return a, b, c


class FastBackend:
    """Exact bounded least squares by variable projection over lambda = ln b.

    `fit_prefixes` fits several prefixes of one curve with one set of array operations
    (replay needs the fit after every point of a recorded curve); `fit` is the one-prefix
    case of the same code, so a prefix gets the same parameters either way. The coarse
    grid is a fixed lattice in log lambda, so the grids of all prefixes are slices of one
    lattice and the coarse search of every prefix is one cumulative sum.
    """

    name = "fast"

    #: Spacing of the coarse log-lambda lattice, points of each zoom grid, and zoom rounds.
    lattice_step = 0.17
    zoom_points = 33
    zoom_rounds = 3

    def fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | str:
        a, b, c = self.fit_prefixes(x, y, np.array([len(x)]))
        return float(a[0]), float(b[0]), float(c[0])

    def fit_prefixes(self, x: np.ndarray, y: np.ndarray, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit the first counts[p] points of one curve for each p; x rescaled (first point 1).

        Callers validate the points (finite, x strictly increasing, every count >= 3).
        Returns arrays a, b, c, one entry per count.
        """
        with np.errstate(all="ignore"):
            return self._fit(_Prefixes(x, y, counts))

    def fit_curves(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit independent curves (each x rescaled, validated, >= 3 points); arrays a, b, c, one per curve."""
        with np.errstate(all="ignore"):
            return self._fit(_Curves(xs, ys))

    def _fit(self, problem: "_Prefixes"):
        rows = problem.rows
        # Below lam_lo the exponential is a straight line over the data; above lam_hi it is
        # a step after the first point. Both limits are covered to float precision.
        h = self.lattice_step
        j_lo = np.floor(np.log(1e-4 / problem.span) / h)
        j_hi = np.ceil(np.log(40.0 / problem.dx_min) / h)
        lattice = h * np.arange(j_lo.min(), j_hi.max() + 1)
        found = problem.profile_shared(lattice)  # (3, P, m): ssr, a, k
        if len(rows) > 1:  # one row's lattice is exactly its own range: nothing outside
            outside = (lattice < h * j_lo[:, None] - 1e-9) | (lattice > h * j_hi[:, None] + 1e-9)
            found[0][outside] = np.inf
        i = found[0].argmin(axis=1)
        best = np.concatenate([found[:, rows, i], lattice[None, i]])  # (4, P): ssr, a, k, log-lambda
        lo, hi = h * j_lo, h * j_hi
        step = np.full(len(rows), h)
        for _ in range(self.zoom_rounds):
            z_lo = np.maximum(best[3] - step, lo)
            z_hi = np.minimum(best[3] + step, hi)
            width = z_hi - z_lo
            zoom = z_lo[:, None] + width[:, None] * _unit(self.zoom_points)
            step = width / (self.zoom_points - 1)
            found = problem.profile(zoom)
            j = found[0].argmin(axis=1)
            candidate = np.concatenate([found[:, rows, j], zoom[None, rows, j]])
            best = np.where(candidate[0] <= best[0], candidate, best)
        # A last parabolic step through the best zoom point's neighbours lands on a smooth minimum.
        jm = np.maximum(j - 1, 0)
        jp = np.minimum(j + 1, self.zoom_points - 1)
        s0, s1, s2 = found[0, rows, jm], found[0, rows, j], found[0, rows, jp]
        denom = s0 - 2 * s1 + s2
        t = zoom[rows, j] + 0.5 * step * (s0 - s2) / denom
        usable = (j > 0) & (j < self.zoom_points - 1) & (denom > 0) & np.isfinite(t)
        t = np.where(usable, t, best[3])[:, None]
        # Evaluated twice over so the grid axis is longer than 1 (see _Prefixes on summation order).
        candidate = np.concatenate([problem.profile(np.repeat(t, 2, axis=1))[:, :, 0], t.T])
        best = np.where(usable & (candidate[0] < best[0]), candidate, best)
        ssr, a, k, log_lam = best
        # b = 1 (lambda = 0) makes f the constant a - 1: the flat-curve boundary.
        n, sy, syy = problem.n, problem.sy, problem.syy
        flat_a = np.clip(sy / n + 1.0, A_MIN, A_MAX)
        flat = syy - 2 * (flat_a - 1) * sy + n * (flat_a - 1) ** 2 <= ssr
        lam = np.exp(log_lam)
        # f = a - k exp(-lam (x - 1)), so K = b^c = k e^lam and c = ln K / lam.
        c = np.maximum(np.log(k) / lam + 1.0, 0.0)
        return np.where(flat, flat_a, a), np.where(flat, 1.0, np.exp(lam)), np.where(flat, 0.0, c)


_UNITS: dict[int, np.ndarray] = {}


def _unit(points: int) -> np.ndarray:
    """linspace(0, 1, points), cached: zoom grids are lo + (hi - lo) * unit."""
    unit = _UNITS.get(points)
    if unit is None:
        unit = _UNITS[points] = np.linspace(0.0, 1.0, points)
    return unit


_BOUNDS_A = np.array([A_MIN, A_MAX])[:, None, None]


class _Prefixes:
    """Best (a, k) and SSR per log-lambda for prefixes of one curve, a in [A_MIN, A_MAX], K = b^c >= 1.

    Per lambda the model is y ~ a - k g with g = exp(-lambda (x - 1)) (g(1) = 1, well
    conditioned) and k >= exp(-lambda). The objective is a convex quadratic in (a, k): its
    minimum is the unconstrained one when feasible, else on an active bound (a = A_MIN,
    a = A_MAX or k = k_min), each solved in closed form.

    Sums over points run along the first axis of a C-ordered array whose last axis is
    longer than 1; numpy then adds point after point (no pairwise blocking), so a prefix's
    sums do not depend on how many zeroed points follow it and a batch and a single fit agree.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, counts):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        counts = np.asarray(counts, dtype=int)
        self.rows = np.arange(len(counts))
        self.last = counts - 1
        n_used = int(counts.max())
        x, y = x[:n_used], y[:n_used]
        self.dx = (x - x[0])[:, None, None]  # (n, 1, 1)
        self.y = y[:, None, None]
        self.partial = bool((counts < n_used).any())
        if self.partial:  # only partial prefixes need the mask
            self.valid = (np.arange(n_used)[:, None] < counts[None, :])[:, :, None]  # (n, P, 1)
        self.span = self.dx[self.last, 0, 0]
        steps = x[1:] - x[:-1]
        running_min = np.minimum.accumulate(steps)
        self.dx_min = running_min[counts - 2]
        self.n = counts.astype(float)
        self.sy, self.syy = np.cumsum(np.stack([y, y * y], axis=1), axis=0)[self.last].T
        self.n_col, self.sy_col, self.syy_col = self.n[:, None], self.sy[:, None], self.syy[:, None]

    def profile_shared(self, log_lams: np.ndarray) -> np.ndarray:
        """One grid (m,) for every prefix -> (3, P, m): prefix sums from one cumulative sum."""
        lams = np.exp(log_lams)
        g = np.exp(-lams * self.dx[:, :, 0])  # (n, m)
        terms = np.stack([g, g * self.y[:, :, 0], g * g], axis=1)  # (n, 3, m)
        if self.partial:
            sums = np.cumsum(terms, axis=0)[self.last]  # (P, 3, m)
        else:  # one prefix, the whole curve: the same point-after-point sum, without the running copy
            sums = np.add.reduce(terms, axis=0)[None]
        sg, sgy, sgg = sums.transpose(1, 0, 2)  # each (P, m)
        return self._best(np.broadcast_to(lams, sg.shape), sg, sgy, sgg)

    def profile(self, log_lams: np.ndarray) -> np.ndarray:
        """A grid per prefix (P, m) -> (3, P, m)."""
        lams = np.exp(log_lams)
        g = np.exp(-lams * self.dx)  # (n, P, m)
        if self.partial:
            g *= self.valid
        sg = np.add.reduce(g, axis=0)
        sgy = np.add.reduce(g * self.y, axis=0)
        sgg = np.add.reduce(g * g, axis=0)
        return self._best(lams, sg, sgy, sgg)

    def _best(self, lams, sg, sgy, sgg) -> np.ndarray:
        # Called five times per fit on small arrays, so it is written for few numpy calls
        # (results written in place with out=); the arithmetic is the same expression for
        # every candidate and every batch shape, which keeps batches bit-identical to single fits.
        n, sy, syy = self.n_col, self.sy_col, self.syy_col
        k_min = np.exp(-lams)
        # cand[0] = ssr, cand[1] = a, cand[2] = k for the four candidates: the interior
        # solution, a on either bound (best k >= k_min), k = k_min (best a within bounds).
        cand = np.empty((3, 4, *sg.shape))
        ssr, a, k = cand
        det = sg * sg - n * sgg
        np.divide(sg * sgy - sy * sgg, det, out=a[0])
        np.divide(n * sgy - sg * sy, det, out=k[0])
        a[1:3] = _BOUNDS_A
        np.maximum((_BOUNDS_A * sg - sgy) / sgg, k_min, out=k[1:3])
        np.minimum(np.maximum((sy + k_min * sg) / n, A_MIN), A_MAX, out=a[3])
        k[3] = k_min
        np.add(syy + a * (n * a - 2 * sy), k * (k * sgg + 2 * (sgy - a * sg)), out=ssr)
        # An infeasible interior solution (NaN or inf when det = 0 included: comparisons with
        # NaN are false) is out; the bound candidates are always finite (sgg >= 1).
        feasible = a[0] >= A_MIN
        feasible &= a[0] <= A_MAX
        feasible &= k[0] >= k_min
        np.copyto(ssr[0], np.inf, where=~feasible)
        flat = cand.reshape(3, 4, -1)
        pick = flat[0].argmin(axis=0)
        return flat[:, pick, np.arange(pick.size)].reshape(3, *sg.shape)


class _Curves(_Prefixes):
    """`_Prefixes` for P independent curves: the point axis is padded to the longest, padding masked out.

    Every sum is the same point-after-point sum as a single curve's (a padded point adds an
    exact 0), so each curve gets the parameters `fit_curve` gives it alone.
    """

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray]):
        counts = np.array([len(x) for x in xs])
        n_used = int(counts.max())
        self.rows = np.arange(len(counts))
        self.last = counts - 1
        x = np.empty((n_used, len(xs)))
        y = np.zeros((n_used, len(xs)))
        for p, (xp, yp) in enumerate(zip(xs, ys)):
            x[: len(xp), p] = xp
            x[len(xp):, p] = xp[-1]  # padding: finite, non-negative dx (masked out below)
            y[: len(yp), p] = yp
        self.dx = (x - x[0])[:, :, None]  # (n, P, 1)
        self.y = y[:, :, None]
        self.partial = True
        self.valid = (np.arange(n_used)[:, None] < counts[None, :])[:, :, None]  # (n, P, 1)
        self.span = self.dx[self.last, self.rows, 0]
        running_min = np.minimum.accumulate(np.diff(x, axis=0), axis=0)
        self.dx_min = running_min[counts - 2, self.rows]
        self.n = counts.astype(float)
        sums = np.cumsum(np.stack([y, y * y], axis=1), axis=0)  # (n, 2, P)
        self.sy, self.syy = sums[self.last, 0, self.rows], sums[self.last, 1, self.rows]
        self.n_col, self.sy_col, self.syy_col = self.n[:, None], self.sy[:, None], self.syy[:, None]

    def profile_shared(self, log_lams: np.ndarray) -> np.ndarray:
        """One grid (m,) for every curve -> (3, P, m)."""
        return self.profile(np.broadcast_to(log_lams, (len(self.rows), len(log_lams))))


_BACKENDS: dict[str, FitBackend] = {"fast": FastBackend(), "scipy": ScipyBackend()}


def get_backend(name: str) -> FitBackend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"The 'backend' parameter must be one of {sorted(_BACKENDS)}; got {name!r} instead."
        ) from None
