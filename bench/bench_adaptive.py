"""Per-observation latency of the `adaptive` policy versus the paper's rule, side by side in one run.

Both see the same generated search (models in order, each fully before the next, as replay
does). The paper's policy is the plain per-model PredictionAnalyzer (no replay prefix cache);
adaptive runs inside its search population, so its times include calibration lookups. The
population's learning step (`finish()`, which scores a reference's prefixes) is timed apart:
it runs once per network, not once per point. Target: adaptive < 5 ms per observation.

Run: python bench/bench_adaptive.py [--models 200] [--population mixed]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from peng4nn.policies import make_policy, make_policy_factory
from peng4nn.synthetic_curves import POPULATIONS, generate_population

ESTIMATOR = {"E": 0.5, "e_max": 20}


def timed_search(curves, factory):
    """Observation latencies (s) until each model stops, and finish() latencies (s)."""
    observe, finish = [], []
    for c in curves:
        policy = factory(c)
        for i in range(len(c)):
            t0 = time.perf_counter()
            d = policy.observe(*c.point(i))
            observe.append(time.perf_counter() - t0)
            if d.stop:
                break
        t0 = time.perf_counter()
        policy.finish()
        finish.append(time.perf_counter() - t0)
    return np.array(observe), np.array(finish)


def describe(name: str, times: np.ndarray) -> str:
    ms = times * 1e3
    return (f"{name:<18} n={len(ms):6d}  median {np.median(ms):6.3f} ms  p95 {np.percentile(ms, 95):6.3f} ms  "
            f"max {ms.max():7.3f} ms  total {ms.sum() / 1e3:6.2f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--population", default="mixed", choices=sorted(POPULATIONS))
    args = ap.parse_args(argv)
    curves = generate_population(replace(POPULATIONS[args.population], n_models=args.models), seed=0)
    timed_search(curves[:12], make_policy_factory("adaptive", estimator=ESTIMATOR))  # imports (scipy.stats) once

    paper_obs, _ = timed_search(curves, lambda c: make_policy("paper", estimator=ESTIMATOR))
    adaptive_obs, adaptive_fin = timed_search(curves, make_policy_factory("adaptive", estimator=ESTIMATOR))
    print(f"{args.models} models of the '{args.population}' population, E=0.5, e_max=20")
    print(describe("paper observe", paper_obs))
    print(describe("adaptive observe", adaptive_obs))
    print(describe("adaptive finish", adaptive_fin))
    ratio = np.median(adaptive_obs) / np.median(paper_obs)
    print(f"median per observation: adaptive / paper = {ratio:.2f}x; "
          f"adaptive p95 {'<' if np.percentile(adaptive_obs, 95) < 5e-3 else '>='} 5 ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
