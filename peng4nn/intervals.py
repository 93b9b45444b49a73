"""Profile-likelihood intervals for what a validation curve will reach, from the same curve family as Algorithm 1.

The paper's function f(x) = a - b^(c - x) is, with lambda = ln b, f = a - K e^(-lambda x).
Written around the first observed epoch x0 it is

    f(x) = alpha + beta * h(x - x0),   h(d) = (1 - e^(-lambda d)) / lambda   (h(d) -> d as lambda -> 0)

which is linear in (alpha, beta) for a fixed lambda and stays well conditioned down to the
straight-line limit. The value at a target epoch D, theta = alpha + beta h(D - x0), is then a
linear function of (alpha, beta), so for each lambda the smallest sum of squared residuals
with theta held fixed is the quadratic SSR(lambda) + (theta - theta_hat(lambda))^2 / v(lambda).
The profile-likelihood interval {theta : min_lambda SSR_theta <= SSR_min + delta} is therefore
a union of closed-form intervals over a lambda grid: one vectorised pass, no iteration.

Noise: delta = sigma^2 F(1, nu; level). sigma^2 pools the curve's own residuals with a prior
(sigma0 with nu0 pseudo degrees of freedom), so a 3-point curve still gets a finite interval
and a population can supply its measured noise level as the prior.

The interval is for the noise-free curve's value at the target epoch (the asymptote a when the
curve has converged by then). Unlike the paper's fit it leaves (alpha, beta) unbounded: an
estimate that is clearly out of range is a fact about the evidence, and callers clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Default nominal coverage of the two-sided interval.
DEFAULT_LEVEL = 0.90

#: Prior noise level (accuracy points) and its weight in pseudo degrees of freedom.
DEFAULT_SIGMA0 = 0.5
DEFAULT_NU0 = 2.0

#: Rates lambda (per epoch) scanned; 0 (a straight line) is always included. The interval is a
#: union over the grid, so a coarse grid under-covers: 96 points gave 83-86% for a nominal 90%.
_LAMBDA_GRID_POINTS = 240
_LAMBDA_MIN, _LAMBDA_MAX = 1e-3, 30.0


@dataclass(frozen=True)
class CurveInterval:
    """Point estimate and interval for the curve's value at `target_epoch` (accuracy points)."""

    estimate: float
    lo: float
    hi: float
    target_epoch: float
    sigma: float
    n_points: int
    #: Best fit f(x) = alpha + beta (1 - e^(-lam (x - x0))) / lam, lam per epoch (0: a line).
    alpha: float
    beta: float
    lam: float
    x0: float

    @property
    def asymptote(self) -> float | None:
        """The paper's a (value as x -> infinity); None for a straight line or a falling curve."""
        if self.lam <= 0 or self.beta < 0:
            return None
        return self.alpha + self.beta / self.lam

    def paper_parameters(self) -> tuple[float, float, float] | None:
        """(a, b, c) of a - b^(c - x) with x in the paper's units (first epoch = 1), when it is one."""
        a = self.asymptote
        if a is None or self.beta <= 0:
            return None
        lam_x = self.lam * self.x0  # rate per rescaled unit
        if not 0.0 < lam_x < _MAX_EXPONENT:  # b = e^lam_x is no float (a long curve's late segment)
            return None
        # a - f(x0) = beta / lam = b^(c - 1)
        return a, math.exp(lam_x), 1.0 + math.log(self.beta / self.lam) / lam_x

    @property
    def half_width(self) -> float:
        return 0.5 * (self.hi - self.lo)


#: Largest exponent whose exp() is a float (e^709 ~ 8e307).
_MAX_EXPONENT = 700.0


@lru_cache(maxsize=1024)
def _f_quantile(level: float, dof: float) -> float:
    from scipy.stats import f as f_dist

    return float(f_dist.ppf(level, 1, dof))


@lru_cache(maxsize=1024)
def _lambda_grid(span: float) -> np.ndarray:
    """Rates worth scanning for a curve spanning `span` epochs (0 = straight line); cached (spans repeat:
    they are multiples of E), so the array is read-only."""
    lo = min(_LAMBDA_MIN, 1e-2 / max(span, 1e-9))
    grid = np.concatenate(([0.0], np.geomspace(lo, _LAMBDA_MAX, _LAMBDA_GRID_POINTS)))
    grid.flags.writeable = False
    return grid


def _h(lams: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(1 - e^(-lambda d)) / lambda for every lambda (rows) and d (columns); d at lambda = 0."""
    lam = lams[:, None]
    safe = np.where(lam > 0, lam, 1.0)
    return np.where(lam > 0, -np.expm1(-safe * d[None, :]) / safe, d[None, :])


def curve_interval(
    epochs,
    accuracies,
    target_epoch: float,
    *,
    level: float = DEFAULT_LEVEL,
    sigma0: float = DEFAULT_SIGMA0,
    nu0: float = DEFAULT_NU0,
    ceiling: float | None = None,
) -> CurveInterval | None:
    """Profile-likelihood interval for f(target_epoch); None with fewer than 3 points.

    `level` is the two-sided nominal coverage. With nu0 = 0 the noise is the curve's own
    residual variance only (needs 4+ points), the classical F-based profile interval.
    `ceiling` bounds the value (100 for an accuracy): the fit and the interval are those of the
    family restricted to f(target_epoch) <= ceiling. Clipping an unrestricted interval instead
    turns a steep early curve, whose straight-line extrapolation passes 100, into a certain
    [100, 100]; restricted, it gets the lower end the data allow.
    """
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(accuracies, dtype=float)
    n = len(x)
    if n < 3 or n != len(y):
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    if nu0 < 0 or sigma0 < 0:
        raise ValueError(f"sigma0 and nu0 must be non-negative; got sigma0={sigma0!r}, nu0={nu0!r}")
    d = x - x[0]
    lams = _lambda_grid(float(d[-1]))
    H = _h(lams, d)  # (L, n)
    h_t = _h(lams, np.array([float(target_epoch) - x[0]]))[:, 0]  # (L,)

    # Ordinary least squares of y on [1, h] per lambda, in closed form.
    sh = H.sum(axis=1)
    shh = np.einsum("ij,ij->i", H, H)
    shy = H @ y
    sy, syy = float(y.sum()), float(y @ y)
    det = n * shh - sh * sh
    ok = det > 1e-12 * np.maximum(n * shh, 1e-300)
    det = np.where(ok, det, 1.0)
    beta = (n * shy - sh * sy) / det
    alpha = (sy - beta * sh) / n
    ssr = np.maximum(syy - alpha * sy - beta * shy, 0.0)
    ssr = np.where(ok, ssr, np.inf)
    theta = alpha + beta * h_t
    # Var factor of theta = c^T (X^T X)^-1 c with c = (1, h_t).
    v = (shh - 2.0 * h_t * sh + n * h_t * h_t) / det

    if ceiling is not None:
        # Restricted to theta <= ceiling: a rate whose free fit passes the ceiling fits best at it.
        over = theta > ceiling
        ssr = np.where(over, ssr + (theta - ceiling) ** 2 / np.maximum(v, 1e-300), ssr)
        theta_fit = np.minimum(theta, ceiling)
    else:
        theta_fit = theta
    best = int(np.argmin(ssr))
    ssr_min = float(ssr[best])
    if not math.isfinite(ssr_min):
        return None
    dof = nu0 + n - 3
    if dof <= 0:
        return None
    sigma2 = (nu0 * sigma0 * sigma0 + ssr_min) / dof
    delta = sigma2 * _f_quantile(level, dof)
    # For each rate, the thetas whose restricted SSR is within delta of the best: theta_hat +- reach,
    # where SSR(theta) = SSR_free + (theta - theta_hat)^2 / v (SSR_free: the rate's unrestricted fit).
    ssr_free = np.maximum(syy - alpha * sy - beta * shy, 0.0)
    slack = ssr_min + delta - np.where(ok, ssr_free, np.inf)
    inside = slack >= 0
    reach = np.sqrt(np.where(inside, slack, 0.0) * np.maximum(v, 0.0))
    lows, highs = theta - reach, theta + reach
    if ceiling is not None:
        inside &= lows <= ceiling
        highs = np.minimum(highs, ceiling)
    lo = float(np.min(np.where(inside, lows, np.inf)))
    hi = float(np.max(np.where(inside, highs, -np.inf)))
    return CurveInterval(
        estimate=float(theta_fit[best]),
        lo=lo,
        hi=hi,
        target_epoch=float(target_epoch),
        sigma=math.sqrt(sigma2),
        n_points=n,
        alpha=float(alpha[best]),
        beta=float(beta[best]),
        lam=float(lams[best]),
        x0=float(x[0]),
    )
