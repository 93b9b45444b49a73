"""PEng4NN's Optuna pruner beside Optuna's own pruners, on real recorded NAS curves replayed as Optuna studies.

Each recorded network is one trial. The objective reports the network's curve point by point
(``peng4nn.integrations.optuna.report(trial, val_acc, step, lr=...)``: step k is epoch k + 1)
and asks ``trial.should_prune()`` after every point; a pruned trial raises ``TrialPruned``, a
trial that is never pruned returns the best accuracy of its whole curve (its best checkpoint).
Trials run one after another in the file's order (the order the search produced them), and in
``--orders - 1`` shuffled orders.

Per pruner: mean epochs trained per trial; overlap@20% of the study's ranking with the true one
(truth: the best accuracy over e_max epochs); regret@1 of the trial the study crowns.
- The study's ranking: PEng4NN's estimate (`ranked_trials`); for Optuna's pruners a completed
  trial's value, and for a pruned trial the best accuracy it showed (what the search knows of it).
- The crowned trial: `best_trial_by_estimate(study)` for PEng4NN; ``study.best_trial`` (the best
  completed trial) for Optuna's pruners, which is what an Optuna user gets.
The "fixed k" rows train every network k epochs and rank by the best accuracy seen (no Optuna).

    python bench/optuna_pruners.py                       # the shared SVHN set, 1 + 4 orders
    python bench/optuna_pruners.py --csv FILE --E 1 --e-max 20 --orders 1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from peng4nn.integrations.optuna import PEng4NNPruner, best_trial_by_estimate, ranked_trials, report
from peng4nn.metrics import overlap, regret_at_1, top_count, top_indices
from peng4nn.replay import read_curves

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "metaqnn-svhn.csv"


def optuna_pruners() -> dict[str, callable]:
    """Optuna's pruners with their defaults (PatientPruner needs a patience: 1 step, wrapping MedianPruner)."""
    def patient():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=1)

    return {
        "MedianPruner": optuna.pruners.MedianPruner,
        "SuccessiveHalvingPruner": optuna.pruners.SuccessiveHalvingPruner,
        "HyperbandPruner": optuna.pruners.HyperbandPruner,
        "PatientPruner(MedianPruner, patience=1)": patient,
    }


def tuned_pruners() -> dict[str, callable]:
    """Optuna's pruners made to spend more epochs, for a comparison at (about) equal cost."""
    out = {}
    for w in (4, 6, 8):
        out[f"MedianPruner(n_warmup_steps={w})"] = lambda w=w: optuna.pruners.MedianPruner(n_warmup_steps=w)
    for r in (4, 8):
        out[f"SuccessiveHalvingPruner(min_resource={r})"] = (
            lambda r=r: optuna.pruners.SuccessiveHalvingPruner(min_resource=r))
    for r in (2, 4):
        out[f"HyperbandPruner(min_resource={r})"] = lambda r=r: optuna.pruners.HyperbandPruner(min_resource=r)
    return out


def read_rates(path: str) -> dict[str, list[float]]:
    """The file's optional ``lr`` column per model (replay's reader does not keep it)."""
    rates: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("lr"):
                rates.setdefault(row["model_id"], []).append(float(row["lr"]))
    return rates


def run_study(curves, order, pruner, E: float, rates: dict[str, list[float]], name: str) -> dict:
    """One study over the curves in `order`; returns per-trial epochs, scores and the crowned trial."""
    def objective(trial: optuna.Trial) -> float:
        curve = curves[order[trial.number]]
        lrs = rates.get(curve.model_id)
        for i in range(len(curve)):
            lr = lrs[i] if lrs is not None and i < len(lrs) else None
            report(trial, float(curve.val_acc[i]), i, lr=lr)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve.val_acc.max())

    # A fixed study name: HyperbandPruner assigns trials to brackets by a hash of the study name.
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0),
                                study_name=name)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=len(order))
    seconds = time.perf_counter() - t0
    trials = study.trials
    epochs = np.array([len(t.intermediate_values) * E for t in trials])
    if isinstance(pruner, PEng4NNPruner):
        scores = np.full(len(trials), -math.inf)
        for t, est in ranked_trials(study):
            scores[t.number] = est.value if est.value is not None else -math.inf
        crowned = best_trial_by_estimate(study).number
    else:
        scores = np.array([t.value if t.state == optuna.trial.TrialState.COMPLETE
                           else max(t.intermediate_values.values()) for t in trials])
        crowned = study.best_trial.number
    return {"epochs": epochs, "scores": scores, "crowned": crowned, "seconds": seconds}


def judge(truth: np.ndarray, epochs: np.ndarray, scores: np.ndarray, crowned: int) -> dict:
    return {"epochs": float(epochs.mean()), "overlap20": overlap(list(truth), list(scores), 20),
            "regret1": float(truth.max() - truth[crowned]), "regret1_ranking": regret_at_1(list(truth), list(scores))}


def fixed(curves, order, k: int) -> dict:
    truth = np.array([curves[i].val_acc.max() for i in order])
    scores = np.array([curves[i].val_acc[:k].max() for i in order])
    crowned = top_indices(list(scores), 1)[0]
    return judge(truth, np.full(len(order), float(k)), scores, crowned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(DEFAULT_CSV))
    parser.add_argument("--E", type=float, default=1.0, help="epochs per recorded point")
    parser.add_argument("--e-max", type=float, default=20.0)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--orders", type=int, default=5, help="the file's order plus this many minus 1 shuffles")
    parser.add_argument("--policies", default="adaptive,paper", help="PEng4NN policies to run")
    parser.add_argument("--no-tuned", dest="tuned", action="store_false",
                        help="skip Optuna's pruners with settings that spend more epochs")
    parser.add_argument("--json", default=None, help="also write every number to this file")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    curves = read_curves(args.csv)
    rates = read_rates(args.csv)
    n_points = int(round(args.e_max / args.E))
    curves = [c for c in curves if len(c) >= n_points]
    print(f"{len(curves)} curves of {n_points} points from {args.csv}; top 20% = {top_count(len(curves), 20)} networks")
    orders = [list(range(len(curves)))]
    rng = random.Random(0)
    for _ in range(args.orders - 1):
        shuffled = orders[0][:]
        rng.shuffle(shuffled)
        orders.append(shuffled)

    estimator = {"E": args.E, "e_max": args.e_max}
    contenders = {f"PEng4NN ({p})": (lambda p=p: PEng4NNPruner(p, estimator=estimator, num_classes=args.num_classes))
                  for p in args.policies.split(",") if p}
    contenders.update(optuna_pruners())
    if args.tuned:
        contenders.update(tuned_pruners())
    rows: dict[str, list[dict]] = {}
    for name, make in contenders.items():
        for o, order in enumerate(orders):
            truth = np.array([curves[i].val_acc.max() for i in order])
            run = run_study(curves, order, make(), args.E, rates, f"{name} order {o}")
            row = judge(truth, run["epochs"], run["scores"], run["crowned"]) | {"seconds": run["seconds"]}
            rows.setdefault(name, []).append(row)
            print(f"{name:42s} order {o}: epochs {row['epochs']:5.2f}  overlap@20% {row['overlap20']:.3f}  "
                  f"regret@1 {row['regret1']:.2f}  ({row['seconds']:.0f} s)", flush=True)
    peng = rows[next(iter(contenders))]
    k_eq = max(1, int(round(np.mean([r["epochs"] for r in peng]))))
    for k in sorted({1, 2, 3, k_eq}):
        rows[f"fixed k = {k} epochs" + (" (PEng4NN's cost)" if k == k_eq else "")] = [fixed(curves, order, k)
                                                                                   for order in orders]

    print(f"\n| pruner | mean epochs (of {args.e_max:g}) | overlap@20% | regret@1 of the crowned trial |")
    print("|---|---|---|---|")
    for name, rs in rows.items():
        file_order = rs[0]
        cells = [f"{file_order[key]:.2f}" if key != "overlap20" else f"{file_order[key]:.3f}"
                 for key in ("epochs", "overlap20", "regret1")]
        if len(rs) > 1:
            cells = [f"{c} ({np.mean([r[key] for r in rs]):.{3 if key == 'overlap20' else 2}f})"
                     for c, key in zip(cells, ("epochs", "overlap20", "regret1"))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if len(orders) > 1:
        print(f"(each cell: the file's order, then in parentheses the mean over it and {len(orders) - 1} shuffles)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
