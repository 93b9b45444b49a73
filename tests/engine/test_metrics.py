"""The paper's metrics on small cases checked by hand (Fig. 6 gives overlap 0, 1/4 and 1)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from peng4nn.analyzer import Reason
from peng4nn.metrics import (
    epochs_saved,
    mean_accuracy_difference,
    overlap,
    regret_at_1,
    summarize,
    throughput_gain,
    top_count,
    top_indices,
)

#: Eight models; the ground-truth best half is models 0-3.
ACTUAL = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


@pytest.mark.parametrize(
    "n, percent, k",
    [(3, 10, 1), (10, 10, 1), (10, 20, 2), (15, 10, 2), (25, 30, 8), (24, 30, 7), (5, 30, 2), (1, 10, 1), (4, 100, 4)],
)
def test_set_size_is_x_percent_of_n_rounded_half_up_at_least_one(n, percent, k):
    assert top_count(n, percent) == k


def test_ties_keep_input_order():
    assert top_indices([5.0, 7.0, 5.0, 7.0], 3) == [1, 3, 0]


@pytest.mark.parametrize(
    "estimate, expected",
    [
        ([1.0, 2.0, 3.0, 4.0, 8.0, 7.0, 6.0, 5.0], 0.0),  # Fig. 6 left: predicted best are the true worst
        ([9.0, 0.1, 0.2, 0.3, 8.0, 7.0, 6.0, 0.0], 0.25),  # Fig. 6 centre: one of four shared
        ([5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0], 1.0),  # Fig. 6 right: same set, order irrelevant
    ],
)
def test_overlap_matches_fig_6(estimate, expected):
    assert overlap(ACTUAL, estimate, 50) == expected


def test_mean_accuracy_difference_uses_the_actual_accuracy_of_the_predicted_set():
    estimate = [9.0, 0.1, 0.2, 0.3, 8.0, 7.0, 6.0, 0.0]  # predicted best: models 0, 4, 5, 6
    # Truth (8+7+6+5)/4 = 6.5; predicted (8+4+3+2)/4 = 4.25.
    assert mean_accuracy_difference(ACTUAL, estimate, 50) == pytest.approx(2.25)
    assert mean_accuracy_difference(ACTUAL, ACTUAL, 50) == 0.0


def test_regret_at_1_is_what_keeping_the_top_ranked_model_loses():
    assert regret_at_1(ACTUAL, [0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0]) == 4.0
    assert regret_at_1(ACTUAL, ACTUAL) == 0.0
    assert regret_at_1([3.0, 5.0], [7.0, 7.0]) == 2.0  # a tie ranks the earlier model first


def test_epochs_saved_and_throughput_gain():
    assert epochs_saved([5.0, 10.0, 20.0], [20.0, 20.0, 10.0]) == [0.75, 0.5, -1.0]
    assert throughput_gain([5.0, 10.0], [20.0, 20.0]) == pytest.approx(40 / 15)


def test_summary_has_the_json_shape():
    estimates = [9.0, 0.1, 0.2, 0.3, 8.0, 7.0, 6.0, 0.0]
    stops = [2.0, 4.0, 5.0, 5.0, 10.0, 10.0, 2.0, 20.0]
    outcomes = [
        SimpleNamespace(actual_max=a, estimate=e, stop_epoch=s, baseline_stop_epoch=20.0,
                        reason=Reason.MAX_EPOCHS if s == 20.0 else Reason.CONVERGED, interval=(e - 1.0, e + 1.0))
        for a, e, s in zip(ACTUAL, estimates, stops)
    ]
    s = summarize(outcomes)
    assert set(s) == {"n_models", "epochs_saved_mean", "throughput_gain", "overlap", "mean_acc_diff", "regret_at_1",
                      "mean_epochs", "mae", "mae_top", "coverage", "coverage_n"}
    assert s["mean_epochs"] == pytest.approx(sum(stops) / 8)
    assert s["mae"] == pytest.approx(sum(abs(a - e) for a, e in zip(ACTUAL, estimates)) / 8)
    # Coverage is judged on the 7 models stopped before e_max only (the last one ran to e_max).
    hits = sum(e - 1 <= a <= e + 1 for a, e, st in zip(ACTUAL, estimates, stops) if st < 20)
    assert s["coverage_n"] == 7 and s["coverage"] == pytest.approx(hits / 7)
    assert s["n_models"] == 8
    assert s["epochs_saved_mean"] == pytest.approx(1 - sum(stops) / 160)
    assert s["throughput_gain"] == pytest.approx(160 / sum(stops))
    assert set(s["overlap"]) == set(s["mean_acc_diff"]) == {"10", "20", "30"}
    # n = 8: 10% -> 1 model, 20% -> 2, 30% -> 2. Predicted order 0, 4, 5, 6, ...
    assert s["overlap"] == {"10": 1.0, "20": 0.5, "30": 0.5}
    assert s["mean_acc_diff"]["20"] == pytest.approx((8 + 7) / 2 - (8 + 4) / 2)
    assert s["regret_at_1"] == 0.0


@pytest.mark.parametrize("call", [lambda: overlap([1.0], [1.0, 2.0], 10), lambda: summarize([]), lambda: top_count(0, 10),
                                  lambda: top_count(5, 0), lambda: regret_at_1([float("nan")], [1.0])])
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()
