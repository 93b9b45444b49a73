"""The paper's metrics (Section IV-B/C) over replayed models, plus regret@1.

Savings compare the engine's stop epoch with the MENNDL baseline's; accuracy compares the
ranking by the engine's estimate with the ranking by the ground truth (best accuracy up to
e_max). Sets of "best x%" always have equal size k = max(1, round-half-up(x * n / 100));
ties in a ranking are broken by input order (the earlier model ranks higher).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

#: The x of "best x%" reported by the paper (Tables IV and V).
TOP_PERCENTS: tuple[int, ...] = (10, 20, 30)


def top_count(n: int, percent: float) -> int:
    """Size of the best-`percent`% set of n models: round half up, at least 1, at most n."""
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100]; got {percent}")
    return min(n, max(1, math.floor(percent * n / 100 + 0.5)))


def top_indices(values: Sequence[float], k: int) -> list[int]:
    """Indices of the k highest values; ties keep input order."""
    order = sorted(range(len(values)), key=lambda i: -values[i])  # sorted() is stable
    return order[:k]


def overlap(actual: Sequence[float], estimate: Sequence[float], percent: float) -> float:
    """|ground-truth best x% ∩ predicted best x%| / |ground-truth best x%| (Table IV, Fig. 6)."""
    _check_pair(actual, estimate)
    k = top_count(len(actual), percent)
    return len(set(top_indices(actual, k)) & set(top_indices(estimate, k))) / k


def mean_accuracy_difference(actual: Sequence[float], estimate: Sequence[float], percent: float) -> float:
    """Mean actual accuracy of the ground-truth best x% minus that of the predicted best x% (Table V)."""
    _check_pair(actual, estimate)
    k = top_count(len(actual), percent)
    truth = [actual[i] for i in top_indices(actual, k)]
    predicted = [actual[i] for i in top_indices(estimate, k)]
    return sum(truth) / k - sum(predicted) / k


def regret_at_1(actual: Sequence[float], estimate: Sequence[float]) -> float:
    """Best actual accuracy minus the actual accuracy of the model ranked first by estimate."""
    _check_pair(actual, estimate)
    return max(actual) - actual[top_indices(estimate, 1)[0]]


def mean_abs_error_top(actual: Sequence[float], estimate: Sequence[float], percent: float) -> float:
    """Mean |estimate - actual| over the ground-truth best x%: the networks whose estimates matter."""
    _check_pair(actual, estimate)
    idx = top_indices(actual, top_count(len(actual), percent))
    return sum(abs(estimate[i] - actual[i]) for i in idx) / len(idx)


def epochs_saved(stop_epochs: Sequence[float], baseline_stop_epochs: Sequence[float]) -> list[float]:
    """Per model, 1 - engine epochs / baseline epochs (Fig. 5); negative when the engine trained longer."""
    _check_pair(stop_epochs, baseline_stop_epochs)
    return [1.0 - s / b for s, b in zip(stop_epochs, baseline_stop_epochs)]


def throughput_gain(stop_epochs: Sequence[float], baseline_stop_epochs: Sequence[float]) -> float:
    """Total baseline epochs / total engine epochs: how many more models fit in the same compute."""
    _check_pair(stop_epochs, baseline_stop_epochs)
    return sum(baseline_stop_epochs) / sum(stop_epochs)


#: Reasons for which a run's interval is what it saw, not a prediction.
_FULL_RUN_REASONS = ("max_epochs", "curve_ended")


def summarize(outcomes: Sequence[Any], percents: Sequence[int] = TOP_PERCENTS) -> dict[str, Any]:
    """The `summary` object of `peng4nn replay --json` from replay's ModelOutcome list."""
    if not outcomes:
        raise ValueError("summarize needs at least one model outcome")
    actual = [o.actual_max for o in outcomes]
    estimate = [o.estimate for o in outcomes]
    stops = [o.stop_epoch for o in outcomes]
    baseline = [o.baseline_stop_epoch for o in outcomes]
    saved = epochs_saved(stops, baseline)
    # Coverage is judged where it is a prediction: a network trained to e_max reports [best, best].
    stopped_early = [o for o in outcomes if o.interval is not None and o.reason.value not in _FULL_RUN_REASONS]
    covered = sum(1 for o in stopped_early if o.interval[0] - 1e-9 <= o.actual_max <= o.interval[1] + 1e-9)
    errors = [abs(e - a) for e, a in zip(estimate, actual)]
    return {
        "n_models": len(outcomes),
        "mean_epochs": sum(stops) / len(stops),
        "mae": sum(errors) / len(errors),
        "mae_top": {str(p): mean_abs_error_top(actual, estimate, p) for p in percents},
        "coverage": covered / len(stopped_early) if stopped_early else None,
        "coverage_n": len(stopped_early),
        "epochs_saved_mean": sum(saved) / len(saved),
        "throughput_gain": throughput_gain(stops, baseline),
        "overlap": {str(p): overlap(actual, estimate, p) for p in percents},
        "mean_acc_diff": {str(p): mean_accuracy_difference(actual, estimate, p) for p in percents},
        "regret_at_1": regret_at_1(actual, estimate),
    }


def _check_pair(first: Sequence[float], second: Sequence[float]) -> None:
    if len(first) != len(second):
        raise ValueError(f"both sequences must have the same length; got {len(first)} and {len(second)}")
    if not first:
        raise ValueError("needs at least one model")
    if any(not math.isfinite(v) for v in (*first, *second)):
        raise ValueError("values must be finite numbers")
