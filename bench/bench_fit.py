"""Time per fit of Algorithm 1: `fast` vs `scipy` (curve_fit from the paper's initial values), side by side.

Usage: python bench/bench_fit.py [--curves-per-size 5] [--seed 0]

Fits the same seeded learning curves (noisy saturating curves, never-learners, late
learners), every size from 3 to 40 points, with both back-ends in one run; prints the
median time per fit by size range, the ratio, and whether fast's SSR stayed within
1e-6 of curve_fit's wherever curve_fit succeeded. A last line times `fit_prefixes`, the
batch replay uses (all 38 prefixes of a 40-point curve in one call), per fit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from peng4nn.curve import fit_curve, fit_prefixes

E = 0.5
RANGES = ((3, 10), (11, 20), (21, 40), (3, 40))


def curves(per_size: int, seed: int):
    rng = np.random.default_rng(seed)
    for n in range(3, 41):
        for _ in range(per_size):
            x = E * np.arange(1, n + 1)
            kind = rng.choice(["learner", "never", "late"], p=[0.7, 0.15, 0.15])
            if kind == "never":
                y = 10 + rng.normal(0, 0.3, n)
            elif kind == "late":
                y = 10 + rng.uniform(30, 80) * (1 - np.exp(-0.4 * np.clip(x - rng.uniform(2, 8), 0, None)))
                y = y + rng.normal(0, 0.5, n)
            else:
                a = rng.uniform(30, 95)
                y = a - (a - 10) * np.exp(-rng.uniform(0.1, 1.0) * x) + rng.normal(0, rng.uniform(0.2, 2.0), n)
            yield n, x, np.clip(y, 0, 100)


def timed(backend, x, y):
    t0 = time.perf_counter()
    fit = fit_curve(x, y, backend)
    return time.perf_counter() - t0, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves-per-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []  # (n, fast_s, scipy_s, scipy_ok, fast_within)
    for n, x, y in curves(args.curves_per_size, args.seed):
        fast_s, fast = timed("fast", x, y)
        scipy_s, ref = timed("scipy", x, y)
        within = (not ref.ok) or fast.ssr <= ref.ssr * (1 + 1e-6) + 1e-9
        rows.append((n, fast_s, scipy_s, ref.ok, within))

    print(f"{'points':>8} {'fits':>5} {'fast ms':>9} {'scipy ms':>9} {'ratio':>7}")
    for lo, hi in RANGES:
        sel = [r for r in rows if lo <= r[0] <= hi]
        fast_ms = 1e3 * statistics.median(r[1] for r in sel)
        scipy_ms = 1e3 * statistics.median(r[2] for r in sel)
        print(f"{f'{lo}-{hi}':>8} {len(sel):>5} {fast_ms:>9.3f} {scipy_ms:>9.2f} {scipy_ms / fast_ms:>6.1f}x")
    failed = sum(not r[3] for r in rows)
    within = sum(r[4] for r in rows if r[3])
    print(f"curve_fit raised on {failed} of {len(rows)} curves (fast fitted all of them); "
          f"fast SSR <= curve_fit SSR * (1 + 1e-6) on {within} of {len(rows) - failed} where curve_fit succeeded")

    x, y = next((x, y) for n, x, y in curves(1, args.seed + 1) if n == 40)
    lengths = list(range(3, 41))
    reps = []
    for _ in range(20):
        t0 = time.perf_counter()
        fit_prefixes(x, y, lengths)
        reps.append(time.perf_counter() - t0)
    batch_ms = 1e3 * statistics.median(reps)
    print(f"fit_prefixes (fast, 38 prefixes of a 40-point curve in one call): {batch_ms:.2f} ms, "
          f"{1e3 * batch_ms / len(lengths):.0f} us per fit")


if __name__ == "__main__":
    main()
