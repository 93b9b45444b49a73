"""Algorithm 1: the predictive function and its two fitting back-ends, on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from peng4nn.curve import (
    A_MAX,
    BACKEND_NAMES,
    CurveFit,
    FitFailed,
    PrefixFitCache,
    fit_curve,
    fit_many,
    fit_prefixes,
    predictive_function,
)

EPOCHS = 0.5 * np.arange(1, 41)  # validated every half epoch, 20 epochs
X = EPOCHS / EPOCHS[0]  # the paper's rescaling: first point is x = 1


def known_curve(a=60.0, b=1.3, c=5.0, n=40):
    """Accuracies of f(x) = a - b^(c - x) at the rescaled epochs (b, c in rescaled units)."""
    return predictive_function(X[:n], a, b, c)


def test_predictive_function_is_the_papers():
    assert predictive_function(5.0, 32.0, 2.0, 5.0) == pytest.approx(31.0)  # a - b^0
    assert predictive_function(6.0, 32.0, 2.0, 5.0) == pytest.approx(31.5)
    assert predictive_function(1.0, 10.0, 1.0, 7.0) == pytest.approx(9.0)  # b = 1: flat line a - 1


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_recovers_known_parameters_without_noise(backend):
    y = known_curve(a=60.0, b=1.3, c=5.0)
    fit = fit_curve(EPOCHS, y, backend)
    assert isinstance(fit, CurveFit) and fit.ok and fit.backend == backend
    assert fit.a == pytest.approx(60.0, abs=1e-3)
    assert fit.b == pytest.approx(1.3, abs=1e-4)
    assert fit.c == pytest.approx(5.0, abs=1e-2)
    assert fit.ssr < 1e-6
    assert fit.x_scale == 0.5 and fit.n_points == 40
    np.testing.assert_allclose(fit.predict(EPOCHS), y, atol=1e-3)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_recovers_the_asymptote_under_noise(backend):
    rng = np.random.default_rng(7)
    y = known_curve(a=75.0, b=1.2, c=20.0) + rng.normal(0, 0.4, 40)
    fit = fit_curve(EPOCHS, y, backend)
    assert fit.ok
    assert fit.a == pytest.approx(75.0, abs=1.0)
    residual = y - fit.predict(EPOCHS)
    assert np.sqrt(np.mean(residual**2)) < 0.6  # about the noise level, no worse


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_flat_curve_predicts_its_level(backend):
    y = np.full(12, 10.0)
    fit = fit_curve(EPOCHS[:12], y, backend)
    assert fit.ok
    assert fit.ssr < 1e-6
    np.testing.assert_allclose(fit.predict(EPOCHS[:12]), 10.0, atol=1e-3)
    assert 10.0 - 1e-3 <= fit.a <= 11.0 + 1e-3  # a flat line is a - 1 (b = 1) or a - tiny


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_steep_early_curve_predicts_above_100(backend):
    # Only the steep start of a curve heading far up: the fit asks for more than 100%.
    y = 150.0 - 140.0 * np.exp(-0.08 * X[:6])
    fit = fit_curve(EPOCHS[:6], y, backend)
    assert fit.ok
    assert 100.0 < fit.a <= A_MAX + 1e-9


def _varied_curves():
    """Seeded curves of every shape a search produces, 3 to 40 points."""
    rng = np.random.default_rng(2024)
    curves = []
    for i in range(30):
        n = int(rng.integers(3, 41))
        x = EPOCHS[:n] if i % 6 else np.cumsum(rng.uniform(0.2, 1.5, n))
        kind = i % 5
        if kind == 0:
            y = rng.uniform(20, 90) - rng.uniform(5, 60) * np.exp(-rng.uniform(0.05, 2) * x) + rng.normal(0, 1.5, n)
        elif kind == 1:
            y = 10 + rng.normal(0, 0.3, n)
        elif kind == 2:
            y = rng.uniform(0, 100, n)
        elif kind == 3:
            y = 5 + 8 * x + rng.normal(0, 1, n)
        else:
            y = 99 - 60 * np.exp(-0.05 * x) + rng.normal(0, 0.2, n)
        curves.append((x, np.clip(y, 0, 100)))
    return curves


def test_fast_is_never_worse_than_curve_fit():
    """Where curve_fit succeeds, fast's SSR is at most curve_fit's (1e-6 relative slack)."""
    compared = 0
    for x, y in _varied_curves():
        reference = fit_curve(x, y, "scipy")
        fast = fit_curve(x, y, "fast")
        assert fast.ok, fast
        if not reference.ok:
            continue
        compared += 1
        assert fast.ssr <= reference.ssr * (1 + 1e-6) + 1e-9, (x, y, fast, reference)
        assert 0.5 <= fast.a <= 102.5 and fast.b >= 1.0 and fast.c >= 0.0
    assert compared >= 25


def _hard_curves():
    """Curves on which an earlier fast solver (two zoom rounds) missed curve_fit's SSR by more than
    1e-6: an asymptote near 100 and clipped straight lines, where the optimum sits on a bound."""
    rng = np.random.default_rng(0)
    picked = {134: None, 183: None, 253: None, 269: None}
    for trial in range(270):
        n = int(rng.integers(3, 41))
        x = 0.5 * np.arange(1, n + 1)
        if trial % 7 == 0:
            x = np.cumsum(rng.uniform(0.1, 2, n))
        kind = trial % 5
        if kind == 0:
            y = rng.uniform(20, 90) - rng.uniform(5, 60) * np.exp(-rng.uniform(0.05, 2) * x) + rng.normal(0, rng.uniform(0, 3), n)
        elif kind == 1:
            y = np.full(n, 10.0) + rng.normal(0, 0.3, n)
        elif kind == 2:
            y = rng.uniform(0, 100, n)
        elif kind == 3:
            y = np.clip(5 + 8 * x + rng.normal(0, 1, n), 0, 100)
        else:
            y = np.clip(99 - 60 * np.exp(-0.05 * x) + rng.normal(0, 0.2, n), 0, 100)
        if trial in picked:
            picked[trial] = (x, y)
    return list(picked.values())


@pytest.mark.parametrize("index", range(4))
def test_fast_is_never_worse_than_curve_fit_on_hard_curves(index):
    x, y = _hard_curves()[index]
    reference, fast = fit_curve(x, y, "scipy"), fit_curve(x, y, "fast")
    assert reference.ok
    assert fast.ssr <= reference.ssr * (1 + 1e-6) + 1e-9


def test_backends_agree_on_a_clean_curve():
    y = known_curve(a=42.0, b=1.15, c=12.0, n=20) + np.random.default_rng(1).normal(0, 0.2, 20)
    fast, reference = fit_curve(EPOCHS[:20], y, "fast"), fit_curve(EPOCHS[:20], y, "scipy")
    assert fast.a == pytest.approx(reference.a, abs=0.05)
    assert fast.b == pytest.approx(reference.b, rel=1e-2)
    np.testing.assert_allclose(fast.predict(EPOCHS), reference.predict(EPOCHS), atol=0.1)


def test_fast_fits_a_zigzag_at_least_as_well_as_curve_fit():
    """curve_fit needs thousands of evaluations here (with SciPy's default budget it raised); the fast
    back-end's exact search is never worse."""
    y = np.array([10.0, 60.0, 20.0, 70.0, 15.0, 65.0])
    reference = fit_curve(EPOCHS[:6], y, "scipy")
    fast = fit_curve(EPOCHS[:6], y, "fast")
    assert fast.ok and np.isfinite(fast.ssr)
    if not isinstance(reference, FitFailed):
        assert fast.ssr <= reference.ssr * (1 + 1e-9)
    # The best constant is a valid member of the family: fast must do at least as well.
    assert fast.ssr <= float(np.sum((y - y.mean()) ** 2)) * (1 + 1e-9)


@pytest.mark.parametrize(
    "epochs, accs, why",
    [
        ([0.5, 1.0], [10, 20], "at least 3 points"),
        ([0.5, 1.0, 1.5], [10, float("nan"), 20], "non-finite"),
        ([0.5, 1.0, 1.0], [10, 20, 30], "strictly increasing"),
        ([0.0, 1.0, 1.5], [10, 20, 30], "positive"),
    ],
)
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_unfittable_points_give_a_typed_failure(epochs, accs, why, backend):
    result = fit_curve(epochs, accs, backend)
    assert isinstance(result, FitFailed) and not result.ok
    assert why in result.reason and result.backend == backend


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="backend"):
        fit_curve(EPOCHS[:5], known_curve(n=5), "nope")
    with pytest.raises(ValueError, match="equal length"):
        fit_curve(EPOCHS[:5], known_curve(n=4))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_prefix_fits_match_single_fits(backend):
    rng = np.random.default_rng(3)
    y = np.clip(known_curve(a=55.0, b=1.25, c=8.0, n=14) + rng.normal(0, 0.8, 14), 0, 100)
    lengths = [2, 3, 7, 14] if backend == "scipy" else list(range(2, 15))
    batch = fit_prefixes(EPOCHS[:14], y, lengths, backend)
    for n, fit in zip(lengths, batch):
        single = fit_curve(EPOCHS[:n], y[:n], backend)
        assert fit.ok == single.ok
        if single.ok:
            assert fit.n_points == n
            assert fit.a == pytest.approx(single.a, abs=1e-7)
            assert fit.ssr == pytest.approx(single.ssr, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_fit_many_gives_each_curve_exactly_its_single_fit(backend):
    """The observe API fits concurrent posts together: each must get bit-for-bit what it gets alone."""
    rng = np.random.default_rng(7)
    curves = []
    for i in range(12 if backend == "fast" else 3):
        n = int(rng.integers(1, 41))
        start = float(rng.choice([0.5, 1.0, 2.0]))
        epochs = start * np.arange(1, n + 1) + (rng.uniform(0, 0.2, n).cumsum() if i % 3 == 0 else 0)
        acc = np.clip(rng.uniform(20, 90) - rng.uniform(5, 60) * rng.uniform(0.6, 0.99) ** np.arange(n)
                      + rng.normal(0, rng.uniform(0, 3), n), 0, 100)
        curves.append((epochs, acc))
    curves.append((EPOCHS[:6], np.full(6, 10.0)))  # flat
    curves.append((EPOCHS[:4], np.array([1.0, np.nan, 3.0, 4.0])))  # refused with a reason, not an exception
    batch = fit_many(curves, backend)
    assert len(batch) == len(curves)
    for (epochs, acc), fit in zip(curves, batch):
        assert fit == fit_curve(epochs, acc, backend)  # dataclass equality: every float identical
    assert not batch[-1].ok and "non-finite" in batch[-1].reason
    with pytest.raises(ValueError, match="equal length"):
        fit_many([(EPOCHS[:5], known_curve(n=4))])


def test_prefix_cache_only_answers_for_a_prefix_of_its_curve():
    y = known_curve(n=10)
    cache = PrefixFitCache(EPOCHS[:10], y)
    hit = cache.lookup(EPOCHS[:5], y[:5])
    assert hit is not None and hit.n_points == 5
    assert hit.a == pytest.approx(fit_curve(EPOCHS[:5], y[:5]).a, abs=1e-7)
    changed = y[:5].copy()
    changed[-1] += 1.0
    assert cache.lookup(EPOCHS[:5], changed) is None  # not this curve's points
    assert cache.lookup(EPOCHS[:11], known_curve(n=11)) is None  # longer than the curve
