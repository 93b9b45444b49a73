"""Where `adaptive` spends its epochs, and which bound kept each network training.

For tuning: the frontier (bench/adaptive_frontier.py) says how good a trade-off is; this says
what to change. Networks are grouped by whether they were flat (at chance level) at their first
decision and whether they end in the true top x%; every "continue" decision is attributed to the
rule clause that gave it. Run: python bench/adaptive_where.py CURVES.csv [...] [--num-classes 10]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from peng4nn.adaptive import AdaptivePolicy, AdaptivePopulation
from peng4nn.replay import infer_epoch_step, read_curves, replay


class _Traced(AdaptivePolicy):
    """The policy unchanged, noting why it went on after each decision."""

    clauses: Counter

    def _decide_in_population(self, epoch, est, pop):
        decision = super()._decide_in_population(epoch, est, pop)
        if decision.stop:
            self.clauses[f"stopped: {decision.reason.value}"] += 1
        elif (est.leader_upper if est.leader_upper is not None else est.upper) >= pop.leader():
            self.clauses["went on: could be the search's best"] += 1
        else:
            self.clauses["went on: contender near the threshold"] += 1
        return decision

    def _decide(self, epoch):
        decision = super()._decide(epoch)
        if not decision.stop and self.is_flat() and decision.reason.value == "unstable":
            self.clauses["went on: flat, waiting for a late bloom"] += 1
        elif decision.reason.value == "reference":
            self.clauses["went on: a reference of the search"] += 1
        return decision


def where(path: str, num_classes: int, top: float, e_max: float) -> None:
    curves = read_curves(path)
    clauses: Counter = Counter()
    pop = AdaptivePopulation({"top": top}, estimator={"E": infer_epoch_step(curves), "e_max": e_max},
                             num_classes=num_classes)
    def factory(curve=None):
        policy = pop(curve)  # the search draws its role (reference or ranked) as usual
        policy.__class__ = _Traced
        return policy

    _Traced.clauses = clauses
    outcomes = replay(curves, factory, e_max=e_max)
    finals = np.array([o.actual_max for o in outcomes])
    stops = np.array([min(o.stop_epoch, e_max) for o in outcomes])
    k = max(1, int(round(top / 100 * len(finals))))
    in_top = finals >= np.sort(finals)[::-1][k - 1]
    flat = np.array([c.val_acc[:3].max() <= pop.flat_level for c in curves])
    warm = np.array([any(d.reason.value == "reference" for d in o.decisions) for o in outcomes])
    print(f"\n== {path}: {len(curves)} models, mean {stops.mean():.2f} epochs ({stops.mean() / e_max:.1%} of e_max)")
    for label, mask in (("references", warm), ("flat, ends in top", flat & in_top & ~warm),
                        ("flat, ends below", flat & ~in_top & ~warm), ("learning, ends in top", ~flat & in_top & ~warm),
                        ("learning, ends below", ~flat & ~in_top & ~warm)):
        if mask.any():
            print(f"  {label:<22} n={mask.sum():4d}  mean epochs {stops[mask].mean():5.2f}  "
                  f"share of all epochs {stops[mask].sum() / stops.sum():.2f}")
    E = infer_epoch_step(curves)
    print("  decisions of the ranking rule, by the clause that gave them (a 'went on' decision costs E epochs):")
    for clause, n in clauses.most_common():
        cost = "" if clause.startswith("stopped") else f"  ({n * E:.0f} epochs)"
        print(f"    {clause:<44} {n:6d}{cost}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="curve files (peng4nn replay's format)")
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--top", type=float, default=20.0)
    ap.add_argument("--e-max", type=float, default=20.0)
    args = ap.parse_args(argv)
    for path in args.curves:
        where(path, args.num_classes, args.top, args.e_max)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
