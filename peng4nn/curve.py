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
    if len(x) < MIN_POINTS:
        return FitFailed(f"needs at least {MIN_POINTS} points, got {len(x)}", len(x), fitter.name)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return FitFailed("non-finite epoch or accuracy", len(x), fitter.name)
    if x[0] <= 0 or np.any(np.diff(x) <= 0):
        return FitFailed("epochs must be positive and strictly increasing", len(x), fitter.name)
    xs, scale = rescale_epochs(x)
    result = fitter.fit(xs, y)
    if isinstance(result, str):
        return FitFailed(result, len(x), fitter.name)
    a, b, c = result
    return CurveFit(a, b, c, sum_squared_residuals(xs, y, a, b, c), len(x), fitter.name, scale)


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
                )
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            return f"curve_fit failed: {exc}"
        a, b, c = (float(v) for v in popt)
        if not all(math.isfinite(v) for v in (a, b, c)):
            return "curve_fit returned non-finite parameters"
        return a, b, c


class FastBackend:
    """Exact bounded least squares by variable projection over lambda = ln b."""

    name = "fast"

    #: Points of the initial log-spaced lambda grid, of each zoom grid, and zoom rounds.
    grid_points = 96
    zoom_points = 33
    zoom_rounds = 2

    def fit(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | str:
        dx = float(np.min(np.diff(x)))
        span = float(x[-1] - x[0])
        # Below lam_lo the exponential is a straight line over the data; above lam_hi it is
        # a step after the first point. Both limits are covered to float precision.
        log_grid = np.linspace(math.log(1e-4 / span), math.log(40.0 / dx), self.grid_points)
        stats = _Sums(x, y)
        ssr, a_arr, k_arr = stats.profile(log_grid)
        i = int(np.argmin(ssr))
        step = log_grid[1] - log_grid[0]
        lo, hi = log_grid[0], log_grid[-1]
        best = (ssr[i], log_grid[i], a_arr[i], k_arr[i])
        for round_ in range(self.zoom_rounds):
            centre = best[1]
            zoom = np.linspace(max(centre - step, lo), min(centre + step, hi), self.zoom_points)
            step = zoom[1] - zoom[0]
            zssr, za, zk = stats.profile(zoom)
            j = int(np.argmin(zssr))
            if zssr[j] <= best[0]:
                best = (zssr[j], zoom[j], za[j], zk[j])
            # A last parabolic step through the best point's neighbours lands on a smooth minimum.
            if round_ == self.zoom_rounds - 1 and 0 < j < self.zoom_points - 1:
                s0, s1, s2 = zssr[j - 1], zssr[j], zssr[j + 1]
                denom = s0 - 2 * s1 + s2
                if denom > 0:
                    t = np.array([zoom[j] + 0.5 * step * (s0 - s2) / denom])
                    tssr, ta, tk = stats.profile(t)
                    if tssr[0] < best[0]:
                        best = (tssr[0], t[0], ta[0], tk[0])
        best_ssr, best_t, best_a, best_k = best
        # b = 1 (lambda = 0) makes f the constant a - 1: the flat-curve boundary.
        flat_a = min(max(stats.sy / stats.n + 1.0, A_MIN), A_MAX)
        flat_ssr = stats.syy - 2 * (flat_a - 1) * stats.sy + stats.n * (flat_a - 1) ** 2
        if flat_ssr <= best_ssr:
            return flat_a, 1.0, 0.0
        return self._to_abc(float(best_a), float(best_k), math.exp(best_t))

    @staticmethod
    def _to_abc(a: float, k_scaled: float, lam: float) -> tuple[float, float, float]:
        # f = a - k_scaled * exp(-lam (x - 1)), so K = b^c = k_scaled * e^lam and c = ln K / lam.
        c = math.log(k_scaled) / lam + 1.0
        return a, math.exp(lam), max(c, 0.0)


class _Sums:
    """Best (a, k) and SSR for each log-lambda, with a in [A_MIN, A_MAX] and K = b^c >= 1.

    Per lambda the model is y ~ a - k g with g = exp(-lambda (x - 1)) (g(1) = 1, well
    conditioned) and k >= exp(-lambda). The objective is a convex quadratic in (a, k): its
    minimum is the unconstrained one when feasible, else on an active bound (a = A_MIN,
    a = A_MAX or k = k_min), each solved in closed form.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.dx = x - x[0]
        self.y1 = np.stack([np.ones_like(y), y], axis=1)  # (n, 2)
        self.n = float(len(y))
        self.sy = float(y.sum())
        self.syy = float(y @ y)

    def profile(self, log_lams: np.ndarray):
        n, sy, syy = self.n, self.sy, self.syy
        lams = np.exp(log_lams)
        g = np.exp(np.multiply.outer(-lams, self.dx))  # (L, n)
        sg, sgy = (g @ self.y1).T
        sgg = np.einsum("ij,ij->i", g, g)
        k_min = np.exp(-lams)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            det = sg * sg - n * sgg
            a = np.empty((4, len(lams)))
            k = np.empty((4, len(lams)))
            a[0] = (sg * sgy - sy * sgg) / det
            k[0] = (n * sgy - sg * sy) / det
            a[1], a[2] = A_MIN, A_MAX
            k[1] = np.maximum((A_MIN * sg - sgy) / sgg, k_min)
            k[2] = np.maximum((A_MAX * sg - sgy) / sgg, k_min)
            a[3] = np.clip((sy + k_min * sg) / n, A_MIN, A_MAX)
            k[3] = k_min
            ssr = syy + n * a * a + k * k * sgg - 2 * a * sy + 2 * k * sgy - 2 * a * k * sg
            infeasible = ~((a[0] >= A_MIN) & (a[0] <= A_MAX) & (k[0] >= k_min))
            ssr[0, infeasible] = np.inf
        ssr[~np.isfinite(ssr)] = np.inf
        pick = np.argmin(ssr, axis=0)
        cols = np.arange(len(lams))
        return ssr[pick, cols], a[pick, cols], k[pick, cols]


_BACKENDS: dict[str, FitBackend] = {"fast": FastBackend(), "scipy": ScipyBackend()}


def get_backend(name: str) -> FitBackend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"The 'backend' parameter must be one of {sorted(_BACKENDS)}; got {name!r} instead."
        ) from None
