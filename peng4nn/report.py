"""Replay every policy on recorded curves and publish the paper's evaluation: results.json, report.md, figures.

The policies, all judged on the same curves against the same MENNDL baseline and ground truth:
PEng4NN as published (mean window), with the reference code's median window, and with the
LOSS check; the MENNDL rule itself; Keras-style patience; the ranking-aware `adaptive`
policy; Optuna's MedianPruner, SuccessiveHalvingPruner and PatientPruner (peers.py); and
the fixed budget k epochs for every whole k = 1..e_max, drawn as a curve on the frontier chart.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from peng4nn import defaults
from peng4nn.curve import predictive_function
from peng4nn.metrics import TOP_PERCENTS, summarize, top_count, top_indices
from peng4nn.policies import PEERS
from peng4nn.replay import (
    ModelOutcome,
    PolicyFactory,
    RecordedCurve,
    baseline_monitor,
    infer_epoch_step,
    policy_factory,
    read_curves,
    replay,
)

__all__ = ["PAPER_CLAIMS", "PolicyRun", "ReportResult", "build_report", "fixed_budget_curve", "standard_policies"]

#: The paper's headline numbers (Section IV, Tables IV and V), shown beside ours.
PAPER_CLAIMS = {
    "epochs_saved_mean": (0.61, 0.82),
    "throughput_gain": (2.5, 5.0),
    "overlap": (0.74, 0.97),
    "mean_acc_diff_max": 0.83,
}
FIGURES_MISSING_NOTE = "No figures: the matplotlib package is not installed (pip install 'peng4nn[figures]')."

OPTUNA_MISSING_NOTE = "Optuna's pruners were left out: the optuna package is not installed (pip install 'peng4nn[optuna]')."
#: The policy whose per-model results make Fig. 4, 5, 7, 8 and Tables IV and V.
ENGINE_KEY = "paper"


@dataclass(frozen=True)
class PolicyRun:
    """One policy of the comparison: how to get a fresh factory for one replay."""

    key: str
    label: str
    kind: str
    """'engine' (PEng4NN variants), 'baseline' or 'peer'."""
    description: str
    make_factory: Callable[[], PolicyFactory]


def standard_policies(*, E: float, e_max: float, num_classes: int | None, backend: str = defaults.BACKEND,
                      has_val_loss: bool = True) -> list[PolicyRun]:
    """Every policy the report compares, in display order."""
    peers = PEERS if optuna_available() else {}
    estimator = {"E": E, "e_max": e_max}

    def named(name: str, estimator=estimator, **params) -> Callable[[], PolicyFactory]:
        return lambda: policy_factory(name, estimator=estimator, backend=backend, num_classes=num_classes, **params)

    runs = [
        PolicyRun("paper", "PEng4NN (paper, mean)", "engine", "Algorithm 2 as published: N=3, t=0.5, mean window",
                  named("paper")),
        PolicyRun("paper-median", "PEng4NN (median window)", "engine",
                  "Algorithm 2 with the reference code's median window", named("paper", {**estimator, "window": "median"})),
    ]
    if has_val_loss:
        runs.append(PolicyRun("paper-loss", "PEng4NN (LOSS on)", "engine",
                              "Algorithm 2 with the LOSS check (L=5) for never-learn predictions",
                              named("paper", {**estimator, "loss_check": True})))
    runs.append(PolicyRun("adaptive", "adaptive (ranking-aware)", "engine",
                          "ranking- and uncertainty-aware policy learning from earlier models of the search",
                          named("adaptive")))
    runs += [
        PolicyRun("menndl", "MENNDL rule", "baseline", "stop when the minimum training loss has not decreased for "
                  "10 epochs (the baseline every saving is measured against)", named("menndl")),
        PolicyRun("patience", "Keras patience (5 ep)", "baseline",
                  "EarlyStopping on val_acc, patience 5 epochs, min_delta 0", named("patience")),
    ]
    for peer, description in peers.items():
        runs.append(PolicyRun(peer, peer, "peer", description, named(peer)))
    return runs


def figures_available() -> bool:
    """matplotlib is the ``figures`` extra; without it the report has its tables and says why no figures."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def missing_extras_notes() -> list[str]:
    """What this install left out of the report, for its notes."""
    return ([] if optuna_available() else [OPTUNA_MISSING_NOTE]) + ([] if figures_available() else [FIGURES_MISSING_NOTE])


def optuna_available() -> bool:
    """Optuna is an optional extra (``peng4nn[optuna]``); without it the peers are left out, and the report says so."""
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


def fixed_budget_curve(curves: Sequence[RecordedCurve], *, E: float, e_max: float,
                       monitor: str | None = None) -> list[dict[str, Any]]:
    """The fixed budget k for every whole k = 1..e_max: its summary per k."""
    out = []
    for k in range(1, int(math.floor(e_max + 1e-9)) + 1):
        factory = policy_factory("fixed", estimator={"E": E, "e_max": e_max}, k=float(k))
        outcomes = replay(curves, factory, e_max=e_max, monitor=monitor)
        out.append({"k": k, "summary": summarize(outcomes)})
    return out


def adaptive_budget_curve(curves: Sequence[RecordedCurve], *, E: float, e_max: float, num_classes: int | None,
                          monitor: str | None = None, steps: int = 8) -> list[dict[str, Any]]:
    """`adaptive` under `--budget B` for B from the first decision point (c_min points) to half of e_max: what
    each budget costs (every network counted) and the ranking it buys."""
    from peng4nn.analyzer import EstimatorSettings

    first = EstimatorSettings(E=E, e_max=e_max).c_min * E
    budgets = sorted({round(float(b), 2) for b in np.linspace(first, max(first, e_max / 2), steps)})
    out = []
    for budget in budgets:
        factory = policy_factory("adaptive", estimator={"E": E, "e_max": e_max}, num_classes=num_classes,
                                 budget=budget)
        out.append({"budget": budget, "summary": summarize(replay(curves, factory, e_max=e_max, monitor=monitor))})
    return out


@dataclass
class ReportResult:
    results: dict[str, Any]
    results_path: Path
    report_path: Path
    figures: dict[str, Path] = field(default_factory=dict)


def build_report(curves_path: str | Path, out_dir: str | Path, *, num_classes: int | None = 10, E: float | None = None,
                 e_max: float = defaults.E_MAX, backend: str = defaults.BACKEND, title: str | None = None,
                 policies: Sequence[PolicyRun] | None = None) -> ReportResult:
    """Replay every policy on the curves in `curves_path`; write results.json, report.md and figures to `out_dir`.

    Raises `CurveFileError` (file, line, model) for a bad curves file, before writing anything.
    """
    curves_path = Path(curves_path)
    out_dir = Path(out_dir)
    curves = read_curves(curves_path)
    E = float(E) if E is not None else infer_epoch_step(curves)
    monitor = baseline_monitor(curves)
    if policies is None:
        policies = standard_policies(E=E, e_max=e_max, num_classes=num_classes, backend=backend,
                                     has_val_loss=all(c.val_loss is not None for c in curves))

    outcomes: dict[str, list[ModelOutcome]] = {}
    entries: dict[str, Any] = {}
    for run in policies:
        started = time.perf_counter()
        outcomes[run.key] = replay(curves, run.make_factory(), e_max=e_max, monitor=monitor)
        entries[run.key] = {"label": run.label, "kind": run.kind, "description": run.description,
                            "summary": summarize(outcomes[run.key]),
                            "stop_reasons": _reason_counts(outcomes[run.key]),
                            "replay_s": round(time.perf_counter() - started, 3)}
    budget = fixed_budget_curve(curves, E=E, e_max=e_max, monitor=monitor)
    adaptive_budgets = adaptive_budget_curve(curves, E=E, e_max=e_max, num_classes=num_classes, monitor=monitor)
    engine = outcomes.get(ENGINE_KEY) or next(iter(outcomes.values()))

    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    if figures_available():
        from peng4nn import figures as charts

        figures = _draw_figures(curves, engine, entries, budget, out_dir, e_max, num_classes)
        figures["budget"] = charts.budget_curve(
            [(b["budget"], b["summary"]["mean_epochs"], b["summary"]["overlap"]["20"]) for b in adaptive_budgets],
            [(b["k"], b["summary"]["mean_epochs"], b["summary"]["overlap"]["20"]) for b in budget],
            out_dir / "budget_curve.png")
    results = {
        "title": title or f"{len(curves)} recorded curves from {curves_path.name}",
        "curves": str(curves_path),
        "n_models": len(curves),
        "E": E,
        "e_max": e_max,
        "num_classes": num_classes,
        "backend": backend,
        "baseline_monitor": monitor,
        "training": _training_record(curves_path.parent),
        "paper_claims": {k: list(v) if isinstance(v, tuple) else v for k, v in PAPER_CLAIMS.items()},
        "policies": entries,
        "fixed_budget": budget,
        "adaptive_budget": adaptive_budgets,
        "engine_models": [_outcome_row(o) for o in engine],
        "figures": {k: p.name for k, p in figures.items()},
        "notes": [*curves[0].file_notes, *missing_extras_notes()],
    }
    results_path = _write_text(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    report_path = _write_text(out_dir / "report.md", render_markdown(results))
    return ReportResult(results, results_path, report_path, figures)


# --------------------------------------------------------------------------- figures


def _draw_figures(curves: Sequence[RecordedCurve], engine: list[ModelOutcome], entries: dict[str, Any],
                  budget: list[dict[str, Any]], out_dir: Path, e_max: float, num_classes: int | None) -> dict[str, Path]:
    from peng4nn import figures

    actual = [o.actual_max for o in engine]
    estimate = [o.estimate for o in engine]
    k = top_count(len(engine), 20)
    truth_top = set(top_indices(actual, k))
    predicted_top = set(top_indices(estimate, k))
    drawn = {
        "fig5": figures.epochs_saved_histogram([o.epochs_saved for o in engine], out_dir / "fig5_epochs_saved.png"),
        "fig7": figures.estimate_vs_actual(actual, estimate, truth_top, predicted_top,
                                           out_dir / "fig7_estimate_vs_actual.png"),
        "fig8": figures.top_models_boxplot([actual[i] for i in sorted(truth_top)],
                                           [actual[i] for i in sorted(predicted_top)], out_dir / "fig8_top20_boxplot.png"),
    }
    example = _example_model(curves, engine, num_classes)
    if example is not None:
        curve, outcome = example
        drawn["fig4"] = _draw_example(curve, outcome, out_dir / "fig4_example.png")
    points = [(e["label"], e["summary"]["overlap"]["20"], e["summary"]["epochs_saved_mean"])
              for key, e in entries.items() if key != "menndl"]
    budget_points = [(b["k"], b["summary"]["overlap"]["20"], b["summary"]["epochs_saved_mean"]) for b in budget]
    drawn["frontier"] = figures.frontier(points, budget_points, out_dir / "frontier_saved_vs_overlap20.png")
    return drawn


def _example_model(curves: Sequence[RecordedCurve], engine: list[ModelOutcome],
                   num_classes: int | None) -> tuple[RecordedCurve, ModelOutcome] | None:
    """A typical converged model that learned: the median stop epoch among rising curves estimated within 3 points."""
    chance = 100.0 / (num_classes or 10)
    pairs = [(c, o) for c, o in zip(curves, engine)
             if o.converged and o.decisions and o.decisions[-1].a is not None and o.estimate > chance + 10
             and abs(o.estimate - o.actual_max) <= 3.0 and c.val_acc[0] < o.actual_max - 5.0]
    if not pairs:
        pairs = [(c, o) for c, o in zip(curves, engine) if o.decisions and o.decisions[-1].a is not None]
    if not pairs:
        return None
    pairs.sort(key=lambda p: (p[1].stop_epoch, -p[1].actual_max))
    return pairs[len(pairs) // 2]


def _draw_example(curve: RecordedCurve, outcome: ModelOutcome, path: Path) -> Path:
    from peng4nn import figures

    last = outcome.decisions[-1]
    grid = np.linspace(curve.epochs[0], curve.epochs[-1], 200)
    with np.errstate(over="ignore", invalid="ignore"):
        fitted = predictive_function(grid / curve.epochs[0], last.a, last.b, last.c)
    return figures.example_curve(curve.epochs, curve.val_acc, grid, fitted, outcome.stop_epoch, outcome.estimate,
                                 path, title=f"Fig. 4: model {curve.model_id}")


# --------------------------------------------------------------------------- markdown


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _triple(by_percent: dict[str, float]) -> str:
    """'0.80 / 0.75 / 0.90' for x = 10, 20, 30."""
    return " / ".join(f"{by_percent[str(x)]:.2f}" for x in TOP_PERCENTS)


def render_markdown(results: dict[str, Any]) -> str:
    """report.md from results.json (so a report can be re-rendered without replaying)."""
    p = results["policies"]
    engine_key = ENGINE_KEY if ENGINE_KEY in p else next(iter(p))
    s = p[engine_key]["summary"]
    claims = results["paper_claims"]
    lines = [f"# {results['title']}", ""]
    lines += [f"- Curves: `{Path(results['curves']).name}`, {results['n_models']} models, validated every "
              f"E = {results['E']:g} epochs up to e_max = {results['e_max']:g}; classes: {results['num_classes']}.",
              f"- Baseline for savings: MENNDL's rule on `{results['baseline_monitor']}`; ground truth: each model's "
              f"best validation accuracy up to e_max.",
              f"- Fitting back-end: `{results['backend']}`."]
    lines += [f"- Note: {note}" for note in results.get("notes", [])]
    training = results.get("training")
    if training:
        lines.append(f"- Training: {training['models_recorded']} full curves recorded, {training['failed']} models "
                     f"ended early (excluded), {training['wall_s'] / 60:.1f} min of wall time over "
                     f"{training['sessions']} session(s) ({training['per_model_s']:.1f} s per model).")
    lines += ["", "## PEng4NN beside the paper", "",
              "| metric | this run | paper (CIFAR-100, F-MNIST, SVHN) |", "|---|---|---|",
              f"| mean epochs saved vs MENNDL | {_pct(s['epochs_saved_mean'])} | "
              f"{_pct(claims['epochs_saved_mean'][0])} – {_pct(claims['epochs_saved_mean'][1])} |",
              f"| throughput gain | {s['throughput_gain']:.2f}x | {claims['throughput_gain'][0]:g}x – "
              f"{claims['throughput_gain'][1]:g}x |",
              f"| overlap, best 10/20/30% | {_triple(s['overlap'])} | "
              f"{claims['overlap'][0]:.2f} – {claims['overlap'][1]:.2f} |",
              f"| mean-accuracy difference, best 10/20/30% (points) | "
              f"{_triple(s['mean_acc_diff'])} | "
              f"0.20 – {claims['mean_acc_diff_max']:.2f} |",
              f"| regret@1 (points) | {s['regret_at_1']:.2f} | not reported |", ""]
    reasons = p[engine_key].get("stop_reasons", {})
    if reasons:
        lines += ["Why PEng4NN stopped: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ".", ""]
    lines += ["## Table IV: overlap of the actual and predicted best x%", "", "| x | overlap |", "|---|---|"]
    lines += [f"| {x}% | {s['overlap'][str(x)]:.2f} |" for x in TOP_PERCENTS]
    lines += ["", "## Table V: mean accuracy of the ground-truth minus the predicted best x% (points)", "",
              "| x | difference |", "|---|---|"]
    lines += [f"| {x}% | {s['mean_acc_diff'][str(x)]:.2f} |" for x in TOP_PERCENTS]
    lines += ["", "## Every policy on the same curves", "",
              "| policy | kind | epochs saved | throughput | overlap 10/20/30% | acc diff 10/20/30% | regret@1 |",
              "|---|---|---|---|---|---|---|"]
    for key, entry in p.items():
        q = entry["summary"]
        lines.append(f"| {entry['label']} | {entry['kind']} | {_pct(q['epochs_saved_mean'])} | "
                     f"{q['throughput_gain']:.2f}x | "
                     f"{_triple(q['overlap'])} | "
                     f"{_triple(q['mean_acc_diff'])} | "
                     f"{q['regret_at_1']:.2f} |")
    lines += ["", "Policies:", ""]
    lines += [f"- **{e['label']}**: {e['description']}." for e in p.values()]
    lines += ["", "## Fixed budget: train every model k epochs, rank by best accuracy seen", "",
              "| k | epochs saved | throughput | overlap 20% | acc diff 20% | regret@1 |", "|---|---|---|---|---|---|"]
    for b in results["fixed_budget"]:
        q = b["summary"]
        lines.append(f"| {b['k']} | {_pct(q['epochs_saved_mean'])} | {q['throughput_gain']:.2f}x | "
                     f"{q['overlap']['20']:.2f} | {q['mean_acc_diff']['20']:.2f} | {q['regret_at_1']:.2f} |")
    if results.get("adaptive_budget"):
        lines += ["", "## adaptive under a budget: mean epochs per network, every network counted", "",
                  "| budget B | mean epochs | overlap 20% | regret@1 | estimate error (all / top 20%) |",
                  "|---|---|---|---|---|"]
        for b in results["adaptive_budget"]:
            q = b["summary"]
            lines.append(f"| {b['budget']:g} | {q['mean_epochs']:.2f} | {q['overlap']['20']:.2f} | "
                         f"{q['regret_at_1']:.2f} | {q['mae']:.2f} / {q['mae_top']['20']:.2f} |")
    figs = results["figures"]
    captions = {
        "budget": "adaptive --budget B against the fixed budget: overlap of the best 20% per mean epochs spent",
        "frontier": "Epochs saved versus overlap of the best 20%: every policy, the fixed budget as a curve",
        "fig5": "Fig. 5: share of models by epochs saved (PEng4NN versus MENNDL), mean dashed",
        "fig7": "Fig. 7: PEng4NN estimate versus actual maximum accuracy, best 20% of each ranking marked",
        "fig8": "Fig. 8: actual accuracy of the ground-truth (GT) and predicted (P) best 20%",
        "fig4": "Fig. 4: one network's curve, the predictive function at the stop and the convergence epoch",
    }
    lines += ["", "## Figures", ""]
    for key in ("frontier", "budget", "fig5", "fig7", "fig8", "fig4"):
        if key in figs:
            lines += [f"**{captions[key]}**", "", f"![{key}]({figs[key]})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- helpers


def _reason_counts(outcomes: Sequence[ModelOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        key = o.reason.value if hasattr(o.reason, "value") else str(o.reason)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _outcome_row(o: ModelOutcome) -> dict[str, Any]:
    row = o.to_dict()
    row["reason"] = o.reason.value if hasattr(o.reason, "value") else str(o.reason)
    return row


def _training_record(directory: Path) -> dict[str, Any] | None:
    """Wall time and counts of the experiment that wrote these curves, when its run.json is beside them."""
    run_file = directory / "run.json"
    if not run_file.exists():
        return None
    try:
        state = json.loads(run_file.read_text())
    except ValueError:
        return None
    sessions = state.get("sessions", [])
    wall = float(sum(s.get("wall_s", 0.0) for s in sessions))
    recorded = _count_lines(directory / "models.jsonl")
    failed = _count_lines(directory / "failures.jsonl")
    trained = sum(int(s.get("trained", 0)) for s in sessions)
    return {"config": state.get("config"), "sessions": len(sessions), "wall_s": round(wall, 1),
            "models_recorded": recorded, "failed": failed,
            "per_model_s": wall / trained if trained else 0.0,
            "workers": sorted({s.get("workers") for s in sessions})}


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def _write_text(path: Path, text: str) -> Path:
    """Write via a temporary file, so a crash never leaves a half-written result."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
