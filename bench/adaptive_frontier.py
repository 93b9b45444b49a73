"""Each policy as a point on the "mean epochs used vs overlap@20%" plane, with the fixed-budget curve k = 1..e_max.

Curve sets: generated populations (peng4nn/synthetic_curves.py: late bloomers, never-learners,
noisy curves, crossing curves), the shipped CIFAR-100 sample, and any docs/results/*/curves.csv.
Replay is peng4nn.replay (models in file order, each fully before the next); metrics are
peng4nn.metrics. Run: python bench/adaptive_frontier.py [--sets mixed,crossing] [--seeds 3] [--csv PATH ...]
"""

from __future__ import annotations

import argparse
import glob
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from peng4nn.adaptive import AdaptivePopulation
from peng4nn.metrics import summarize
from peng4nn.replay import infer_epoch_step, policy_factory, read_curves, replay
from peng4nn.synthetic_curves import POPULATIONS, generate_population

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "penguin-cifar100-sample.csv"
CHANCE = 10.0  # generated populations have 10 classes


def evaluate(curves, factory, e_max: float) -> dict:
    t0 = time.perf_counter()
    outcomes = replay(curves, factory, e_max=e_max)
    s = summarize(outcomes)
    stops = np.array([min(o.stop_epoch, e_max) for o in outcomes])
    bloomers = [o for o in outcomes if o.model_id.endswith("-bloomer")]
    # Did the reported interval hold the best accuracy up to e_max? (models stopped before e_max)
    at_stop = [_covers(o.decisions[-1].interval, o.actual_max) for o in outcomes
               if o.decisions[-1].interval is not None and o.stop_epoch < e_max]
    at_all = [_covers(d.interval, o.actual_max) for o in outcomes if o.stop_epoch < e_max
              for d in o.decisions if d.interval is not None]
    return {
        # Late bloomers whose estimate shows they learn (not written off at chance level), of all late bloomers.
        "bloomers": (sum(o.estimate > CHANCE + 10 for o in bloomers), len(bloomers)),
        "coverage": (float(np.mean(at_stop)) if at_stop else None, float(np.mean(at_all)) if at_all else None),
        "epochs": float(stops.mean()),
        "frac": float(stops.mean() / e_max),
        "ov20": s["overlap"]["20"],
        "ov10": s["overlap"]["10"],
        "diff20": s["mean_acc_diff"]["20"],
        "regret": s["regret_at_1"],
        "seconds": time.perf_counter() - t0,
    }


def _covers(interval, value: float) -> bool:
    return interval[0] - 1e-9 <= value <= interval[1] + 1e-9


def _whole_epochs(curve):
    """The curve as if validated once per epoch: only its points at whole epochs."""
    keep = np.isclose(curve.epochs, np.round(curve.epochs)) & (curve.epochs >= 1)
    pick = (lambda column: None if column is None else column[keep])
    return replace(curve, epochs=curve.epochs[keep], val_acc=curve.val_acc[keep], val_loss=pick(curve.val_loss),
                   train_loss=pick(curve.train_loss), lines=None)


def policies(estimator: dict, num_classes: int, adaptive_params: dict):
    yield "paper", lambda: policy_factory("paper", estimator=estimator, num_classes=num_classes)
    yield "adaptive", lambda: AdaptivePopulation(adaptive_params, estimator=estimator, num_classes=num_classes)


def fixed_curve(curves, estimator: dict, e_max: float) -> list[tuple[float, float, float]]:
    """(k, mean epochs, overlap@20%) of the fixed-budget baseline for k = 1..e_max."""
    rows = []
    for k in range(1, int(e_max) + 1):
        r = evaluate(curves, policy_factory("fixed", estimator=estimator, k=float(k)), e_max)
        rows.append((k, r["epochs"], r["ov20"]))
    return rows


def fixed_overlap_at(rows, epochs: float) -> float:
    """Overlap@20% of the fixed-budget curve at `epochs` (linear between integer k; the curve's envelope)."""
    ks = np.array([r[1] for r in rows])
    ov = np.maximum.accumulate(np.array([r[2] for r in rows]))
    return float(np.interp(epochs, ks, ov))


def report(name: str, curves, num_classes: int, e_max: float, adaptive_params: dict, show_fixed: bool) -> dict:
    E = infer_epoch_step(curves)
    estimator = {"E": E, "e_max": e_max}
    print(f"\n== {name}: {len(curves)} models, E={E:g}, e_max={e_max:g}")
    fixed = fixed_curve(curves, estimator, e_max)
    if show_fixed:
        print("fixed k:   " + " ".join(f"{k:>5d}" for k, _, _ in fixed))
        print("  ov@20%:  " + " ".join(f"{o:5.2f}" for _, _, o in fixed))
    results = {}
    print(f"{'policy':<20} {'epochs':>7} {'%e_max':>7} {'ov@20':>6} {'ov@10':>6} {'diff20':>7} {'regret1':>8} "
          f"{'fixed@same':>10} {'s':>6}")
    for pname, make in policies(estimator, num_classes, adaptive_params):
        r = evaluate(curves, make(), e_max)
        r["fixed_same"] = fixed_overlap_at(fixed, r["epochs"])
        results[pname] = r
        _row(pname, r)
    # The same search with its budget set so that its mean epochs match the paper's: who ranks better at equal
    # cost? The budget counts networks after the warm-up, which train to e_max.
    n, warm = len(curves), AdaptivePopulation(adaptive_params).settings.warmup_models
    budget = max((results["paper"]["epochs"] * n - e_max * warm) / max(n - warm, 1), E)
    r = evaluate(curves, AdaptivePopulation({**adaptive_params, "budget": budget}, estimator=estimator,
                                            num_classes=num_classes), e_max)
    r["fixed_same"] = fixed_overlap_at(fixed, r["epochs"])
    results["adaptive@paper-cost"] = r
    _row("adaptive@paper-cost", r)
    return results


def _row(pname: str, r: dict) -> None:
    print(f"{pname:<20} {r['epochs']:7.2f} {r['frac']:7.1%} {r['ov20']:6.3f} {r['ov10']:6.3f} {r['diff20']:7.3f} "
          f"{r['regret']:8.3f} {r['fixed_same']:10.3f} {r['seconds']:6.1f}"
          + (f"  late bloomers kept {r['bloomers'][0]}/{r['bloomers'][1]}" if r["bloomers"][1] else "")
          + (f"  90% interval coverage: at stop {r['coverage'][0]:.2f}, all decisions {r['coverage'][1]:.2f}"
             if r["coverage"][0] is not None else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(POPULATIONS), help="generated populations to run (comma-separated)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per generated population")
    ap.add_argument("--first-seed", type=int, default=0, help="first seed (e.g. 2 for populations never tuned on)")
    ap.add_argument("--models", type=int, default=200, help="models per generated population")
    ap.add_argument("--csv", nargs="*", default=None, help="curve files (default: the shipped sample + docs/results/*/curves.csv)")
    ap.add_argument("--e-max", type=float, default=20.0)
    ap.add_argument("--top", type=float, default=20.0)
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="an adaptive setting to override, e.g. --param warmup_models=20 (repeatable)")
    ap.add_argument("--whole-epochs", action="store_true",
                    help="keep only the points at whole epochs of every curve (E = 1, like per-epoch logs)")
    ap.add_argument("--no-fixed", dest="fixed", action="store_false",
                    help="do not print the fixed-budget curve k = 1..e_max of every set (it is still computed)")
    args = ap.parse_args(argv)
    params = {"top": args.top, "budget": args.budget}
    for item in args.param:
        key, _, value = item.partition("=")
        params[key] = float(value)
    rows = []
    for set_name in [s for s in args.sets.split(",") if s]:
        spec = POPULATIONS[set_name]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            curves = generate_population(replace(spec, n_models=args.models), seed=seed)
            if args.whole_epochs:
                curves = [_whole_epochs(c) for c in curves]
            res = report(f"{set_name} seed {seed}", curves, spec.num_classes, args.e_max, params, args.fixed)
            rows.append((f"{set_name}/{seed}", res))
    files = args.csv if args.csv is not None else [str(SAMPLE), *sorted(glob.glob(str(ROOT / "docs/results/*/curves.csv")))]
    for path in files:
        curves = read_curves(path)
        if args.whole_epochs:
            curves = [_whole_epochs(c) for c in curves]
        num_classes = 100 if "cifar100" in path else 10
        res = report(path, curves, num_classes, args.e_max, params, args.fixed)
        rows.append((Path(path).parent.name if Path(path).name == "curves.csv" else Path(path).stem, res))
    print("\n== summary: share of e_max used / overlap@20% / regret@1; fixed-budget curve at adaptive's cost")
    print(f"{'set':<24} {'adaptive':>22} {'paper':>22} {'adaptive@paper-cost':>22} {'fixed@adaptive':>15}")
    for name, res in rows:
        cells = [f"{res[p]['frac']:6.1%} {res[p]['ov20']:5.3f} {res[p]['regret']:5.2f}"
                 for p in ("adaptive", "paper", "adaptive@paper-cost")]
        print(f"{name:<24} " + " ".join(f"{c:>22}" for c in cells) + f" {res['adaptive']['fixed_same']:15.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
