"""Replay speed: 1,000 synthetic curves of 40 points (E = 0.5, epochs 0.5..20) through the `paper` policy.

Usage: python bench/bench_replay.py [--models 1000] [--compare 200] [--seed 0]

The curves mix the shapes a NAS produces: saturating learners with validation noise,
never-learners stuck at chance, and late or noisy learners. Two settings: the paper's
(t = 0.5: most models stop after a few epochs) and a worst case (t = 0: no model ever
converges, so every model is fitted at every point up to e_max). For each, replay as
shipped (the paper policy gets its fits from `PrefixFitCache`, a batch per few points) is
timed on all models, and the obvious alternative (one `fit_curve` per point) on the first
`--compare` models, side by side; per-model times and the ratio use process CPU time,
which a shared machine's load disturbs less than wall-clock time (both are printed).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from peng4nn.policies import make_policy
from peng4nn.replay import policy_factory, read_curves, replay


def synthetic_curves(n_models: int, n_points: int = 40, E: float = 0.5, seed: int = 0):
    """(model_id, epochs, accuracies, val_losses, train_losses) tuples, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    epochs = E * np.arange(1, n_points + 1)
    for m in range(n_models):
        kind = rng.choice(["learner", "never", "late", "noisy"], p=[0.6, 0.1, 0.15, 0.15])
        if kind == "never":
            acc = 10 + rng.normal(0, 0.3, n_points)
        elif kind == "late":  # flat for a while, then learns: the prediction keeps moving
            start = rng.uniform(3, 12)
            a = rng.uniform(40, 90)
            acc = 10 + (a - 10) * (1 - np.exp(-rng.uniform(0.2, 0.6) * np.clip(epochs - start, 0, None)))
            acc += rng.normal(0, 0.5, n_points)
        else:
            a = rng.uniform(30, 95)
            lam = rng.uniform(0.1, 1.0)
            acc = a - (a - 10) * np.exp(-lam * epochs)
            acc += rng.normal(0, 3.0 if kind == "noisy" else 0.4, n_points)
        acc = np.clip(acc, 0, 100)
        loss = 2.3 * np.exp(-epochs / 8) + rng.normal(0, 0.02, n_points)
        yield f"m{m:05d}", epochs, acc, loss + 0.1, loss


def write_csv(path: Path, curves) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model_id", "epoch", "val_acc", "val_loss", "train_loss"])
        for model_id, epochs, acc, vloss, tloss in curves:
            for row in zip(epochs, acc, vloss, tloss):
                w.writerow([model_id, *(f"{v:.6g}" for v in row)])


def timed_replay(curves, t: float, batched: bool):
    if batched:
        factory = policy_factory("paper", estimator={"t": t}, num_classes=10)
    else:  # the obvious alternative: a plain policy, one fit per point
        def factory(curve):
            return make_policy("paper", estimator={"t": t}, num_classes=10)
    t0, c0 = time.perf_counter(), time.process_time()
    outcomes = replay(curves, factory)
    return time.perf_counter() - t0, time.process_time() - c0, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--compare", type=int, default=200, help="models replayed with one fit per point")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.csv"
        write_csv(path, synthetic_curves(args.models, seed=args.seed))
        t0 = time.perf_counter()
        curves = read_curves(path)
        t_read = time.perf_counter() - t0
    print(f"{len(curves)} models x {len(curves[0])} points; read CSV: {t_read:.2f} s")
    print(f"{'setting':<18} {'models':>6} {'fits':>6} {'converged':>9} {'wall s':>7} {'cpu s':>6} {'ms/model':>8}"
          f" {'one fit per point, ms/model':>28} {'ratio':>6}")
    for label, t in (("paper (t=0.5)", 0.5), ("worst case (t=0)", 0.0)):
        seconds, cpu, outcomes = timed_replay(curves, t, batched=True)
        _, plain_cpu, _ = timed_replay(curves[: args.compare], t, batched=False)
        fits = sum(sum(d.prediction is not None for d in o.decisions) for o in outcomes)
        early = sum(o.converged for o in outcomes)
        per_model = 1e3 * cpu / len(curves)
        plain_per_model = 1e3 * plain_cpu / min(args.compare, len(curves))
        print(f"{label:<18} {len(curves):>6} {fits:>6} {early:>9} {seconds:>7.2f} {cpu:>6.2f} {per_model:>8.2f}"
              f" {plain_per_model:>28.2f} {plain_per_model / per_model:>5.1f}x")

if __name__ == "__main__":
    main()
