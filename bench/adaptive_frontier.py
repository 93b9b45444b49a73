"""The estimator's targets on every curve set at hand: cost, ranking against the fixed-budget frontier, regret,
estimate error and interval coverage, for `adaptive` (the default) and `paper`.

Curve sets: the shared real SVHN set (with and without its metadata side file), the project's own recorded runs
(docs/results/*/curves.csv, including those retrained with a step schedule) and generated populations with
learning-rate schedules (peng4nn/synthetic_curves.py). The frontier is the fixed budget's monotone envelope: the
best overlap of any "train every network k epochs, rank by best seen" at or below the same mean epochs.

Run: python bench/adaptive_frontier.py [--sets svhn,step,...] [--models 600] [--seeds 1] [--policies adaptive,paper]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from peng4nn.metrics import overlap, summarize
from peng4nn.replay import infer_epoch_step, policy_factory, read_curves, read_network_info, replay
from peng4nn.synthetic_curves import POPULATIONS, generate_population

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SCHEDULED = ("step", "step3-tight", "cosine", "step-bloomers", "long-hard")


def real_sets() -> dict[str, tuple]:
    """name -> (curves, num_classes, E, e_max) for the recorded sets that exist here."""
    sets = {}
    svhn = SHARED / "metaqnn-svhn.csv"
    if not svhn.exists():
        svhn = ROOT / "examples" / "data" / "metaqnn-svhn-400.csv"  # a bare clone: the shipped 400
    curves = read_curves(svhn)
    sets[f"real: {svhn.stem}"] = (curves, 10, 1.0, 20.0)
    side = svhn.with_name(svhn.stem + "-models.csv")
    if side.exists():
        info = read_network_info(side)
        sets[f"real: {svhn.stem} + metadata"] = ([replace(c, network=info.get(c.model_id)) for c in curves], 10,
                                                 1.0, 20.0)
    for path in sorted((ROOT / "docs" / "results").glob("*/curves.csv")):
        curves = read_curves(path)
        sets[f"run: {path.parent.name}"] = (curves, 10, infer_epoch_step(curves), 20.0)
    return sets


def generated_sets(names, models: int, seeds: int) -> dict[str, tuple]:
    sets = {}
    for name in names:
        spec = POPULATIONS[name]
        n = min(models, 300) if spec.e_max > 40 else models
        for seed in range(1, seeds + 1):
            curves = generate_population(replace(spec, n_models=n), seed=seed)
            sets[f"gen: {name}/{seed}"] = (curves, spec.num_classes, spec.E, spec.e_max)
    return sets


def frontier_at(curves, e_max: float, E: float, epochs: float) -> float:
    """The fixed budget's monotone envelope at `epochs`: the best overlap@20% of any k at or below that cost."""
    actual = [c.best_accuracy(e_max) for c in curves]
    best = 0.0
    for k in np.arange(E, e_max + 1e-9, E):
        if k > epochs + 1e-9:
            break
        seen = [float(np.max(c.val_acc[c.epochs <= k + 1e-9])) if (c.epochs <= k + 1e-9).any() else 0.0
                for c in curves]
        best = max(best, overlap(actual, seen, 20))
    return best


def evaluate(name: str, curves, num_classes: int, E: float, e_max: float, policy: str) -> dict:
    factory = policy_factory(policy, estimator={"E": E, "e_max": e_max}, num_classes=num_classes)
    started = time.perf_counter()
    outcomes = replay(curves, factory, e_max=e_max)
    seconds = time.perf_counter() - started
    s = summarize(outcomes)
    front = frontier_at(curves, e_max, E, s["mean_epochs"])
    decisions = sum(len(o.decisions) for o in outcomes)
    return {"set": name, "policy": policy, "n": len(curves), "share": s["mean_epochs"] / e_max,
            "epochs": s["mean_epochs"], "ov20": s["overlap"]["20"], "front": front, "gap": s["overlap"]["20"] - front,
            "regret": s["regret_at_1"], "mae": s["mae"], "mae_top": s["mae_top"]["20"], "coverage": s["coverage"],
            "ms_per_decision": 1000 * seconds / max(decisions, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=None, help="comma-separated generated populations (default: the scheduled "
                                                 "ones and mixed, bloomers, nas-like)")
    ap.add_argument("--models", type=int, default=600, help="networks per generated population (default 600)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per generated population (default 1)")
    ap.add_argument("--policies", default="adaptive,paper")
    ap.add_argument("--no-real", dest="real", action="store_false", help="generated populations only")
    args = ap.parse_args()
    names = args.sets.split(",") if args.sets else [*SCHEDULED, "mixed", "bloomers", "nas-like"]
    sets = {**(real_sets() if args.real else {}), **generated_sets(names, args.models, args.seeds)}
    print("| set | policy | n | mean epochs (share of e_max) | overlap@20% | fixed frontier | gap | regret@1 | "
          "MAE all | MAE top 20% | coverage at stop | ms/decision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, (curves, num_classes, E, e_max) in sets.items():
        for policy in args.policies.split(","):
            r = evaluate(name, curves, num_classes, E, e_max, policy)
            rows.append(r)
            cov = f"{r['coverage']:.2f}" if r["coverage"] is not None else "-"
            print(f"| {name} | {policy} | {r['n']} | {r['epochs']:.2f} ({r['share']:.0%}) | {r['ov20']:.3f} | "
                  f"{r['front']:.3f} | {r['gap']:+.3f} | {r['regret']:.2f} | {r['mae']:.2f} | {r['mae_top']:.2f} | "
                  f"{cov} | {r['ms_per_decision']:.2f} |", flush=True)
    for policy in args.policies.split(","):
        mine = [r for r in rows if r["policy"] == policy]
        print(f"\n{policy}: mean share of e_max {np.mean([r['share'] for r in mine]):.1%}, mean overlap@20% "
              f"{np.mean([r['ov20'] for r in mine]):.3f}, mean gap to the frontier {np.mean([r['gap'] for r in mine]):+.3f}, "
              f"sets with regret@1 > 0: {sum(r['regret'] > 0 for r in mine)} of {len(mine)}")


if __name__ == "__main__":
    main()
