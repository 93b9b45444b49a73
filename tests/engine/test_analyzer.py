"""Algorithm 2: every convergence condition on its own, then the whole analyzer on fitted curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from peng4nn.analyzer import EstimatorSettings, PredictionAnalyzer, Reason
from peng4nn.curve import predictive_function


class ScriptedAnalyzer(PredictionAnalyzer):
    """The real rule with predictions given by the test instead of a fit: isolates Algorithm 2."""

    def __init__(self, predictions, settings=None, **kwargs):
        super().__init__(settings, **kwargs)
        self.script = list(predictions)

    def _predict(self):
        p = self.script[len(self.history.points) - 1]
        if p is None:
            return None, None, Reason.TOO_FEW_POINTS
        self.history.predictions[-1] = p
        return p, None, None


def feed(analyzer, accs, losses=None, E=0.5):
    decisions = []
    for i, acc in enumerate(accs):
        loss = None if losses is None else losses[i]
        decisions.append(analyzer.observe(E * (i + 1), acc, val_loss=loss))
    return decisions


def first_stop(decisions):
    return next((d for d in decisions if d.stop), None)


# ---------------------------------------------------------------- settings


def test_settings_use_the_papers_symbols_and_defaults():
    s = EstimatorSettings()
    assert json.loads(s.model_dump_json()) == {
        "N": 3, "E": 0.5, "e_max": 20, "t": 0.5, "loss_check": False, "L": 5, "c_min": 3,
        "never_learn": None, "window": "mean",
    }
    assert EstimatorSettings(**json.loads(s.model_dump_json())) == s


@pytest.mark.parametrize(
    "bad",
    [{"N": 0}, {"E": 0}, {"t": -1}, {"c_min": 2}, {"window": "mode"}, {"e_max": 0.25}, {"unknown": 1}, {"never_learn": 101}],
)
def test_settings_reject_bad_values(bad):
    with pytest.raises(ValidationError):
        EstimatorSettings(**bad)


def test_never_learn_marker_defaults_to_chance_plus_margin():
    assert EstimatorSettings().never_learn_threshold(10) == pytest.approx(11.0)
    assert EstimatorSettings().never_learn_threshold(100) == pytest.approx(2.0)
    assert EstimatorSettings().never_learn_threshold(None) == pytest.approx(11.0)
    assert EstimatorSettings(never_learn=25).never_learn_threshold(100) == 25


# ---------------------------------------------------------------- each condition on its own


def test_no_decision_while_e_is_at_most_N_times_E():
    # Identical predictions from the first point: only the warm-up rule (e <= N*E = 1.5) holds it back.
    d = feed(ScriptedAnalyzer([50.0] * 10), [40.0] * 10)
    assert [x.stop for x in d[:3]] == [False, False, False]
    assert all(x.reason is Reason.WARMING_UP for x in d[:3])
    assert d[3].stop and d[3].epoch == 2.0 and d[3].reason is Reason.CONVERGED


def test_e_max_returns_the_best_observed_accuracy_unconverged():
    preds = [40.0 + 5 * (i % 2) for i in range(40)]  # alternates by 5 points: never within t
    accs = [30.0 + 0.1 * i for i in range(40)]
    accs[20] = 77.0
    d = feed(ScriptedAnalyzer(preds), accs)
    stop = first_stop(d)
    assert stop.epoch == 20.0 and stop.reason is Reason.MAX_EPOCHS
    assert not stop.converged and stop.estimate == 77.0
    assert all(x.reason is Reason.UNSTABLE for x in d[3:39])


def test_prediction_above_100_blocks_convergence():
    preds = [101.0, 101.0, 101.0, 101.0, 101.0, 99.0, 99.0, 99.0, 99.0]
    d = feed(ScriptedAnalyzer(preds, {"t": 5.0}), [50.0] * 9)
    assert [x.reason for x in d[3:5]] == [Reason.ABOVE_100, Reason.ABOVE_100]
    # t = 5 makes condition 2 hold throughout, so the first prediction <= 100 converges.
    assert d[5].stop and d[5].estimate == 99.0


def test_last_N_predictions_must_lie_within_t_of_their_mean():
    d = feed(ScriptedAnalyzer([None, None, 30.0, 31.2, 30.0, 30.5, 30.2, 30.4]), [20.0] * 8)
    # e=2.0: a None among the last 3. e=2.5: [30, 31.2, 30], mean 30.4, 31.2 is 0.8 away.
    # e=3.0: [31.2, 30, 30.5], mean 30.57, 31.2 is 0.63 away.
    assert [x.reason for x in d[3:6]] == [Reason.UNSTABLE] * 3
    # e=3.5: [30, 30.5, 30.2], mean 30.23: all within 0.5.
    assert d[6].stop and d[6].epoch == 3.5 and d[6].estimate == 30.2


def test_median_window_is_offered():
    preds = [None, None, 30.0, 30.0, 30.9]  # mean 30.3: 30.9 is 0.6 away; median 30.0: 0.9 away
    by_mean = feed(ScriptedAnalyzer(preds), [20.0] * 5)
    assert by_mean[4].reason is Reason.UNSTABLE
    preds = [None, None, 30.0, 30.4, 30.45]  # median 30.4: all within 0.4; mean 30.283
    by_median = feed(ScriptedAnalyzer(preds, {"window": "median", "t": 0.41}), [20.0] * 5)
    assert by_median[4].stop
    by_mean = feed(ScriptedAnalyzer(preds, {"window": "mean", "t": 0.41}), [20.0] * 5)
    assert by_mean[4].stop  # both centres accept a tight window
    preds = [None, None, 30.0, 30.8, 30.8]  # median 30.8: 30.0 is 0.8 away; mean 30.533: 0.533 away
    assert feed(ScriptedAnalyzer(preds, {"window": "median", "t": 0.6}), [20.0] * 5)[4].reason is Reason.UNSTABLE
    assert feed(ScriptedAnalyzer(preds, {"window": "mean", "t": 0.6}), [20.0] * 5)[4].stop


def test_loss_check_holds_a_never_learn_prediction_while_loss_still_falls():
    preds = [None, None] + [10.5] * 30  # never-learn for 10 classes (threshold 11)
    falling = [2.3 - 0.01 * i for i in range(32)]
    d = feed(ScriptedAnalyzer(preds, {"loss_check": True}, num_classes=10), [10.0] * 32, falling)
    assert all(x.reason is Reason.LOSS_DECREASING for x in d[4:])
    assert first_stop(d) is None


def test_loss_check_lets_a_never_learn_prediction_stop_once_loss_stalls():
    preds = [None, None] + [10.5] * 30
    losses = [2.3 - 0.1 * i for i in range(6)] + [1.8] * 26  # last new minimum at epoch 3.0
    d = feed(ScriptedAnalyzer(preds, {"loss_check": True, "L": 5}, num_classes=10), [10.0] * 32, losses)
    stop = first_stop(d)
    # The minimum must not have decreased during the last L=5 epochs: first true at e = 3.0 + 5 = 8.0.
    assert stop.epoch == 8.0 and stop.converged and stop.estimate == 10.5
    assert d[14].reason is Reason.LOSS_DECREASING  # e = 7.5


def test_loss_check_ignores_predictions_that_learned():
    preds = [None, None] + [60.0] * 10
    falling = [2.3 - 0.05 * i for i in range(12)]
    d = feed(ScriptedAnalyzer(preds, {"loss_check": True}, num_classes=10), [50.0] * 12, falling)
    assert first_stop(d).epoch == 2.5  # predictions 3..5 agree; loss irrelevant above the marker


def test_loss_check_needs_a_validation_loss():
    a = ScriptedAnalyzer([None] * 3, {"loss_check": True})
    with pytest.raises(ValueError, match="val_loss"):
        a.observe(0.5, 10.0)


def test_loss_check_off_stops_a_never_learner_at_once():
    preds = [None, None] + [10.5] * 10
    d = feed(ScriptedAnalyzer(preds, num_classes=10), [10.0] * 12, [2.3 - 0.1 * i for i in range(12)])
    assert first_stop(d).epoch == 2.5


def test_stop_is_latched():
    a = ScriptedAnalyzer([None, None, 30.0, 30.0, 30.0, 80.0, 80.0])
    d = feed(a, [20.0] * 7)
    assert d[4].stop and a.final is d[4]
    assert d[5].stop and d[5].estimate == 30.0 and d[5].prediction == 80.0
    assert a.final.epoch == 2.5


def test_observe_rejects_points_no_curve_has():
    a = PredictionAnalyzer()
    a.observe(0.5, 10.0)
    with pytest.raises(ValueError, match="increase"):
        a.observe(0.5, 11.0)
    with pytest.raises(ValueError, match="val_acc"):
        a.observe(1.0, 101.0)
    with pytest.raises(ValueError, match="epoch"):
        PredictionAnalyzer().observe(-1.0, 10.0)


# ---------------------------------------------------------------- the whole analyzer on real fits


@pytest.mark.parametrize("backend", ["fast", "scipy"])
def test_noiseless_curve_converges_on_its_asymptote(backend):
    # f itself: every fit from 3 points on recovers a, so the first point with 3 predictions
    # (points 3, 4, 5) past N*E is the 5th, epoch 2.5.
    x = np.arange(1, 41)
    accs = predictive_function(x, 64.0, 1.25, 9.0)
    analyzer = PredictionAnalyzer(backend=backend)
    d = feed(analyzer, accs)
    assert [x.prediction is None for x in d[:2]] == [True, True]
    stop = first_stop(d)
    assert stop.epoch == 2.5 and stop.converged and stop.reason is Reason.CONVERGED
    assert stop.estimate == pytest.approx(64.0, abs=1e-2)
    assert stop.a == stop.prediction and stop.b == pytest.approx(1.25, abs=1e-3)


def test_decision_serialises():
    d = feed(PredictionAnalyzer(), predictive_function(np.arange(1, 6), 64.0, 1.25, 9.0))[-1]
    as_dict = d.to_dict()
    assert as_dict["reason"] == "converged" and as_dict["stop"] is True
    assert json.loads(json.dumps(as_dict))["epoch"] == 2.5


def test_known_fits_stand_in_for_the_policys_own_and_leave_no_trace():
    """`known_fits` is how the service hands batched fits to a policy (no reaching into its attributes)."""
    from peng4nn.curve import PrefixFitCache
    from peng4nn.policies import make_policy

    epochs = [0.5 * i for i in range(1, 9)]
    accs = [70 - 60 * 0.7 ** e for e in epochs]
    alone, helped = PredictionAnalyzer(), PredictionAnalyzer()
    cache = PrefixFitCache(epochs, accs, "fast")
    assert helped.accepts_known_fits(len(epochs)) and not helped.accepts_known_fits(2)  # fewer than c_min: no fit
    with helped.known_fits(cache):
        assert not helped.accepts_known_fits(len(epochs))  # one set of fits at a time
        together = [helped.observe(e, a).to_dict() for e, a in zip(epochs, accs)]
    assert helped.fit_cache is None
    assert together == [alone.observe(e, a).to_dict() for e, a in zip(epochs, accs)]
    patience = make_policy("patience")
    assert not patience.accepts_known_fits(10)
    with patience.known_fits(cache):  # a policy that does not fit ignores them
        patience.observe(0.5, 10.0)
