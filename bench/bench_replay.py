"""Replay speed: 1,000 synthetic curves of 40 points (E = 0.5, epochs 0.5..20) through the `paper` policy.

Usage: python bench/bench_replay.py [--models 1000] [--backend fast] [--seed 0]

The curves mix the shapes a NAS produces: saturating learners with validation noise,
never-learners stuck at chance, and late or noisy learners whose prediction does not settle
(these are the expensive ones: a fit at every point up to e_max). Prints the seconds to read
the CSV and to replay it, the fits made, and the time per fit.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--backend", default="fast", choices=("fast", "scipy"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.csv"
        write_csv(path, synthetic_curves(args.models, seed=args.seed))
        t0 = time.perf_counter()
        curves = read_curves(path)
        t_read = time.perf_counter() - t0

    factory = policy_factory("paper", backend=args.backend, num_classes=10)
    t0 = time.perf_counter()
    outcomes = replay(curves, factory)
    t_replay = time.perf_counter() - t0
    fits = sum(sum(d.prediction is not None for d in o.decisions) for o in outcomes)
    points = sum(len(o.decisions) for o in outcomes)
    converged = sum(o.converged for o in outcomes)
    print(f"models: {len(curves)} x {len(curves[0])} points, backend={args.backend}")
    print(f"read CSV:   {t_read:.2f} s")
    print(f"replay:     {t_replay:.2f} s  ({points} points observed, {fits} fits, {converged} converged)")
    print(f"per model:  {1e3 * t_replay / len(curves):.2f} ms; per fit (incl. analyzer and baseline): "
          f"{1e6 * t_replay / max(fits, 1):.0f} us")


if __name__ == "__main__":
    main()
