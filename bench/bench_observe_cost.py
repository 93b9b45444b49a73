"""Cost of one `PredictionAnalyzer.observe()` (`paper` policy, `fast` back-end), split into its parts.

Usage: python bench/bench_observe_cost.py [--curves 30] [--points 40] [--repeats 7] [--seed 0]
                                         [--baseline-curve OLD_CURVE_PY]

Feeds seeded 40-point validation curves (E = 0.5, e_max beyond the curve so every point is
fitted) to a fresh analyzer point by point, and prints the median microseconds per observe()
over the points that are fitted (3rd point on), next to what its parts cost on the same
prefixes measured alone: `fit_curve` on the prefix, building the prefix arrays from the
history, and the rest (validation, bookkeeping, the decision). Each figure is the median over
`--repeats` interleaved passes of the per-pass mean.

On a shared machine two runs minutes apart differ by more than a 10% change, so a change to the
fit is compared in one run: `--baseline-curve` loads another copy of peng4nn/curve.py (e.g.
`git show HEAD~1:peng4nn/curve.py > /tmp/curve_old.py`), times its `fit_curve` and the current
one alternately on the same prefixes, prints the median per-pair ratio and checks that both give
bit-identical fits.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import numpy as np

from peng4nn.analyzer import EstimatorSettings, PredictionAnalyzer
from peng4nn.curve import fit_curve

E = 0.5


def curves(count: int, points: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = E * np.arange(1, points + 1)
    out = []
    for _ in range(count):
        a = rng.uniform(30, 95)
        y = a - (a - 10) * np.exp(-rng.uniform(0.1, 1.0) * x) + rng.normal(0, rng.uniform(0.2, 2.0), points)
        out.append((x, np.clip(y, 0, 100)))
    return out


def observe_pass(data, settings) -> float:
    """Mean seconds per observe() over the fitted points of every curve."""
    total, fitted = 0.0, 0
    for x, y in data:
        analyzer = PredictionAnalyzer(settings)
        epochs, accs = x.tolist(), y.tolist()
        for i, (e, v) in enumerate(zip(epochs, accs)):
            t0 = time.perf_counter()
            analyzer.observe(e, v)
            dt = time.perf_counter() - t0
            if i + 1 >= settings.c_min:
                total += dt
                fitted += 1
    return total / fitted


def fit_pass(data, c_min: int) -> float:
    """Mean seconds per `fit_curve` on the same prefixes the analyzer fits."""
    total, fitted = 0.0, 0
    for x, y in data:
        for n in range(c_min, len(x) + 1):
            xs, ys = x[:n], y[:n]
            t0 = time.perf_counter()
            fit_curve(xs, ys, "fast")
            total += time.perf_counter() - t0
            fitted += 1
    return total / fitted


def arrays_pass(data, settings) -> float:
    """Mean seconds per point to get the prefix arrays from a history holding that prefix."""
    total, fitted = 0.0, 0
    for x, y in data:
        analyzer = PredictionAnalyzer(settings)
        h = analyzer.history
        for i, (e, v) in enumerate(zip(x.tolist(), y.tolist())):
            analyzer.observe(e, v)
            if i + 1 >= settings.c_min:
                t0 = time.perf_counter()
                h.epochs(), h.accuracies()
                total += time.perf_counter() - t0
                fitted += 1
    return total / fitted


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("baseline_curve", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def compare_fits(data, c_min: int, repeats: int, baseline_path: str) -> None:
    """Current vs baseline `fit_curve`, alternating per curve (who goes first alternates too)."""
    baseline = load_module(baseline_path)

    def timed(fit, x, y):
        t0 = time.perf_counter()
        fits = [fit(x[:n], y[:n], "fast") for n in range(c_min, len(x) + 1)]
        return (time.perf_counter() - t0) / len(fits), fits

    def key(f):
        return (f.a, f.b, f.c, f.ssr) if f.ok else (f.reason,)

    ratios, new_s, old_s, identical = [], [], [], True
    for r in range(repeats):
        for k, (x, y) in enumerate(data):
            if (r + k) % 2:
                old, old_fits = timed(baseline.fit_curve, x, y)
                new, new_fits = timed(fit_curve, x, y)
            else:
                new, new_fits = timed(fit_curve, x, y)
                old, old_fits = timed(baseline.fit_curve, x, y)
            identical &= [key(f) for f in new_fits] == [key(f) for f in old_fits]
            ratios.append(new / old)
            new_s.append(new)
            old_s.append(old)
    print(f"fit_curve vs {baseline_path}: {statistics.median(new_s) * 1e6:.1f} us vs "
          f"{statistics.median(old_s) * 1e6:.1f} us per fit, median per-pair ratio current/baseline "
          f"{statistics.median(ratios):.3f}; fits bit-identical: {identical}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=30)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-curve", help="another copy of peng4nn/curve.py to time fit_curve against")
    args = parser.parse_args()

    data = curves(args.curves, args.points, args.seed)
    settings = EstimatorSettings(E=E, e_max=E * (args.points + 1))
    observe_pass(data, settings)  # warm-up
    passes = [(observe_pass(data, settings), fit_pass(data, settings.c_min), arrays_pass(data, settings))
              for _ in range(args.repeats)]  # interleaved, so load drifts hit every part alike
    observe, fit, arrays = (statistics.median(part) for part in zip(*passes))
    rest = observe - fit - arrays
    print(f"{args.curves} curves x {args.points} points, fitted points {args.points - settings.c_min + 1} per curve")
    print(f"observe() (paper, fast)      {observe * 1e6:8.1f} us per point")
    print(f"  fit_curve on the prefix    {fit * 1e6:8.1f} us  ({fit / observe:5.1%})")
    print(f"  prefix arrays from history {arrays * 1e6:8.1f} us  ({arrays / observe:5.1%})")
    print(f"  rest (checks, decision)    {rest * 1e6:8.1f} us  ({rest / observe:5.1%})")
    if args.baseline_curve:
        compare_fits(data, settings.c_min, args.repeats, args.baseline_curve)


if __name__ == "__main__":
    main()
