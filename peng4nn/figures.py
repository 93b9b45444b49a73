"""The report's figures as PNG files, drawn headless (matplotlib's object API with the Agg canvas, no pyplot).

Each function takes plain numbers, writes one file and returns its path, so a figure can be
redrawn from results.json without replaying anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

DPI = 120
#: Colours and markers of Fig. 7 as the paper draws them.
BOTH_STYLE = {"marker": "^", "color": "#7b3294", "label": "in both best 20%"}
PREDICTED_ONLY_STYLE = {"marker": "o", "color": "#2c7bb6", "label": "predicted best 20% only"}
TRUTH_ONLY_STYLE = {"marker": "s", "color": "#d7191c", "label": "ground-truth best 20% only"}


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()  # one layout pass; "constrained" layout draws every figure twice
    fig.savefig(path, dpi=DPI)
    return path


def epochs_saved_histogram(saved_fractions: Sequence[float], path: str | Path, *, title: str = "") -> Path:
    """Fig. 5: share of models per 10%-bin of epochs saved versus MENNDL, the mean dashed."""
    saved = 100.0 * np.asarray(saved_fractions, dtype=float)
    low = min(0.0, 10.0 * np.floor(saved.min() / 10.0))
    bins = np.arange(low, 100.0 + 10.0, 10.0)
    fig = _figure()
    ax = fig.subplots()
    weights = np.full(len(saved), 100.0 / len(saved))
    ax.hist(saved, bins=bins, weights=weights, color="#4c72b0", edgecolor="white")
    mean = float(saved.mean())
    ax.axvline(mean, color="black", linestyle="--", label=f"mean {mean:.1f}%")
    ax.set_xlabel("training epochs saved versus MENNDL's rule (%)")
    ax.set_ylabel("models (%)")
    ax.set_title(title or "Fig. 5: epochs saved per model")
    ax.legend(loc="upper left")
    return _save(fig, path)


def estimate_vs_actual(actual: Sequence[float], estimate: Sequence[float], truth_top: set[int],
                       predicted_top: set[int], path: str | Path, *, percent: int = 20, title: str = "") -> Path:
    """Fig. 7: estimate versus actual maximum accuracy, the best `percent`% of each ranking marked."""
    actual = np.asarray(actual, dtype=float)
    estimate = np.asarray(estimate, dtype=float)
    fig = _figure(6.0, 5.4)
    ax = fig.subplots()
    index = np.arange(len(actual))
    both = np.array([i in truth_top and i in predicted_top for i in index], dtype=bool)
    pred_only = np.array([i in predicted_top and i not in truth_top for i in index], dtype=bool)
    truth_only = np.array([i in truth_top and i not in predicted_top for i in index], dtype=bool)
    rest = ~(both | pred_only | truth_only)
    ax.scatter(actual[rest], estimate[rest], s=10, color="#999999", label="other models", alpha=0.6)
    for mask, style in ((pred_only, PREDICTED_ONLY_STYLE), (truth_only, TRUTH_ONLY_STYLE), (both, BOTH_STYLE)):
        label = style["label"].replace("20%", f"{percent}%")
        ax.scatter(actual[mask], estimate[mask], s=28, marker=style["marker"], color=style["color"], label=label)
    lo = float(min(actual.min(), estimate.min(), 0.0))
    hi = float(max(actual.max(), estimate.max(), 100.0))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle=":", label="estimate = actual")
    ax.set_xlabel("actual maximum accuracy up to e_max (%)")
    ax.set_ylabel("PEng4NN accuracy estimate (%)")
    ax.set_title(title or f"Fig. 7: estimate vs actual, best {percent}% marked")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def top_models_boxplot(truth_accs: Sequence[float], predicted_accs: Sequence[float], path: str | Path, *,
                       percent: int = 20, title: str = "") -> Path:
    """Fig. 8: actual accuracy of the ground-truth and the predicted best `percent`% (5/25/50/75/95th, mean dot)."""
    fig = _figure(4.8, 4.6)
    ax = fig.subplots()
    ax.boxplot([list(truth_accs), list(predicted_accs)], whis=(5, 95), showmeans=True, showfliers=False,
               meanprops={"marker": "o", "markerfacecolor": "black", "markeredgecolor": "black"},
               medianprops={"color": "red"})
    ax.set_xticks([1, 2], [f"GT best {percent}%", f"P best {percent}%"])
    ax.set_ylabel("actual maximum accuracy (%)")
    ax.set_title(title or f"Fig. 8: accuracy of the best {percent}%")
    return _save(fig, path)


def example_curve(epochs: Sequence[float], accs: Sequence[float], fitted_epochs: Sequence[float],
                  fitted_accs: Sequence[float] | None, stop_epoch: float, estimate: float, path: str | Path, *,
                  title: str = "") -> Path:
    """Fig. 4: one network's whole curve, the last fitted function and the epoch the engine stopped at."""
    fig = _figure()
    ax = fig.subplots()
    epochs = np.asarray(epochs, dtype=float)
    accs = np.asarray(accs, dtype=float)
    used = epochs <= stop_epoch + 1e-9
    ax.scatter(epochs[used], accs[used], s=18, color="#2c7bb6", label="validation accuracy (fitted)")
    ax.scatter(epochs[~used], accs[~used], s=18, facecolors="none", edgecolors="#2c7bb6",
               label="validation accuracy (after the stop)")
    if fitted_accs is not None:
        ax.plot(fitted_epochs, fitted_accs, color="#1a9641", label="predictive function at the stop")
    ax.axvline(stop_epoch, color="red", linestyle=":", label=f"converged at epoch {stop_epoch:g}")
    ax.axhline(estimate, color="gray", linestyle="--", linewidth=0.8, label=f"estimate {estimate:.1f}%")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Fig. 4: one network's estimate and predictive function")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def frontier(points: Sequence[tuple[str, float, float]], budget_curve: Sequence[tuple[float, float, float]],
             path: str | Path, *, title: str = "") -> Path:
    """Epochs saved (mean, %) versus overlap@20% per policy, the fixed budget k = 1..e_max as a curve.

    `points` are (label, overlap, saved fraction); `budget_curve` is (k, overlap, saved fraction).
    """
    fig = _figure(7.0, 5.0)
    ax = fig.subplots()
    if budget_curve:
        ks, ov, sv = zip(*budget_curve)
        ax.plot(ov, 100.0 * np.asarray(sv), color="#999999", marker=".", label="fixed budget k epochs")
        for k, o, s in budget_curve:
            if k in (1, 2, 3, 5, 10) or k == ks[-1]:
                ax.annotate(f"k={k:g}", (o, 100.0 * s), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color="#666666")
    markers = "o^sDvP*Xh<>"
    for i, (label, o, s) in enumerate(points):
        ax.scatter([o], [100.0 * s], s=46, marker=markers[i % len(markers)], label=label, zorder=3)
    ax.set_xlabel("overlap of the best 20% (predicted vs ground truth)")
    ax.set_ylabel("mean epochs saved versus MENNDL (%)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(title or "Trade-off: epochs saved versus ranking quality")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def budget_curve(adaptive: Sequence[tuple[float, float, float]], fixed: Sequence[tuple[float, float, float]],
                 path: str | Path, *, title: str = "") -> Path:
    """Overlap@20% against the mean epochs a network cost: `adaptive --budget B` for several B, and the fixed
    budget k epochs. Points are (B or k, mean epochs, overlap)."""
    fig = _figure(7.0, 5.0)
    ax = fig.subplots()
    if fixed:
        ks, ep, ov = zip(*fixed)
        ax.plot(ep, ov, color="#999999", marker=".", label="fixed budget: every network k epochs")
    if adaptive:
        bs, ep, ov = zip(*adaptive)
        ax.plot(ep, ov, color="#1f77b4", marker="o", label="adaptive --budget B")
        for b, e, o in adaptive:
            ax.annotate(f"B={b:g}", (e, o), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#1f77b4")
    ax.set_xlabel("mean epochs per network (every network counted)")
    ax.set_ylabel("overlap of the best 20% (predicted vs ground truth)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "What a budget buys")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
