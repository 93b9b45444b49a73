"""The adaptive policy: calibrated intervals, ranking against the search, late bloomers, replay determinism."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from peng4nn.adaptive import AdaptivePolicy, AdaptivePopulation
from peng4nn.analyzer import Reason
from peng4nn.cli import main as cli_main
from peng4nn.metrics import summarize
from peng4nn.intervals import curve_interval
from peng4nn.policies import PolicyConfigError, make_policy, make_policy_factory
from peng4nn.replay import RecordedCurve, replay
from peng4nn.synthetic_curves import POPULATIONS, generate_population, learning_curve, write_csv

EPOCHS = 0.5 * np.arange(1, 41)  # E = 0.5, e_max = 20
ESTIMATOR = {"E": 0.5, "e_max": 20}
FIRST_DECISION = 1.5  # the third point: the first a curve can be fitted on


def curve(model_id: str, start: float, final: float, rate: float, *, onset: float = 0.5, noise=0.0, seed=0):
    acc = learning_curve(EPOCHS, start, final, rate, onset=onset)
    if noise:
        acc = acc + np.random.default_rng(seed).normal(0.0, noise, len(EPOCHS))
    return RecordedCurve(model_id, EPOCHS.copy(), np.clip(acc, 0, 100), None, None)


def warm_population(**settings) -> tuple[AdaptivePopulation, list[RecordedCurve]]:
    """Ten networks trained to e_max with finals from 50 to 95 and ordinary speeds: the warm-up."""
    pop = AdaptivePopulation({"warmup_models": 10, **settings}, estimator=ESTIMATOR, num_classes=10)
    finals = np.linspace(50, 95, 10)
    warm = [curve(f"w{i}", 0.4 * f, f, 0.8, noise=0.3, seed=i) for i, f in enumerate(finals)]
    replay(warm, pop, e_max=20)
    return pop, warm


def run(policy, c: RecordedCurve):
    """Feed a curve until the policy stops; finish; return all decisions."""
    decisions = []
    for i in range(len(c)):
        d = policy.observe(*c.point(i))
        decisions.append(d)
        if d.stop:
            break
    policy.finish()
    return decisions


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("n_points", [8, 16, 40])
def test_nominal_90_percent_interval_covers_85_to_95_percent_of_known_asymptotes(n_points):
    rng = np.random.default_rng(n_points)
    hits, trials = 0, 400
    for _ in range(trials):
        a = rng.uniform(40, 95)
        start = rng.uniform(10, a - 10)
        rate = rng.uniform(0.3, 1.5)
        sigma = rng.uniform(0.3, 1.5)
        x = EPOCHS[:n_points]
        y = learning_curve(x, start, a, rate, onset=0.5) + rng.normal(0, sigma, n_points)
        truth = learning_curve(np.array([20.0]), start, a, rate, onset=0.5)[0]  # within 0.3 points of a
        ci = curve_interval(x, y, 20.0, level=0.90, nu0=0.0)
        hits += ci.lo <= truth <= ci.hi
    assert 0.85 <= hits / trials <= 0.95


def test_interval_is_finite_from_three_points_and_shrinks_with_data():
    y = learning_curve(EPOCHS, 30, 80, 0.6)
    widths = [curve_interval(EPOCHS[:n], y[:n], 20.0).half_width for n in (3, 6, 12, 40)]
    assert all(np.isfinite(widths))
    assert widths == sorted(widths, reverse=True)


def test_a_steep_early_curve_gets_a_real_interval_under_the_100_ceiling_not_a_certain_100():
    epochs, accs = [0.5, 1.0, 1.5, 2.0], [20.0, 38.0, 55.0, 71.0]  # a line that passes 100 well before e_max
    free = curve_interval(epochs, accs, 20.0)
    assert free.estimate > 100 and free.lo > 100  # clipping this to [0, 100] would read as "certainly 100"
    capped = curve_interval(epochs, accs, 20.0, ceiling=100.0)
    assert capped.hi <= 100.0 and capped.estimate <= 100.0
    assert capped.lo < 95.0  # the data allow curves that bend well below the ceiling
    mild = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], [60.0, 75.0, 83.0, 88.0, 90.5, 92.0]
    a, b = curve_interval(*mild, 20.0), curve_interval(*mild, 20.0, ceiling=100.0)
    assert (a.estimate, a.lo, a.hi) == pytest.approx((b.estimate, b.lo, b.hi))  # below the ceiling: unchanged


def test_every_decision_with_an_estimate_carries_an_interval_around_it():
    pop, _ = warm_population()
    decisions = run(pop(), curve("x", 30, 85, 0.5, noise=0.5))
    assert decisions[-1].stop
    for d in decisions:
        if d.prediction is not None:
            lo, hi = d.interval
            assert lo <= d.prediction <= hi
            assert d.to_dict()["interval"] == [lo, hi]
    assert decisions[-1].estimate is not None and decisions[-1].interval is not None


# --------------------------------------------------------------------------- ranking


def test_a_clearly_bad_network_stops_at_its_first_decision_point():
    pop, _ = warm_population()
    decisions = run(pop(), curve("bad", 20, 30, 1.5, noise=0.3))
    assert decisions[-1].stop
    assert decisions[-1].epoch == FIRST_DECISION
    assert decisions[-1].reason is Reason.OUT_OF_CONTENTION
    assert decisions[-1].estimate < pop.threshold()


def test_two_close_contenders_at_the_threshold_both_keep_training_and_are_told_apart():
    pop, _ = warm_population()
    threshold = pop.threshold()
    pair = (("c1", threshold - 0.5, 1), ("c2", threshold + 0.5, 2))
    outcomes = [run(pop(), curve(name, 35, final, 0.6, noise=0.3, seed=s)) for name, final, s in pair]
    for decisions in outcomes:
        first = next(d for d in decisions if d.epoch == FIRST_DECISION)
        assert not first.stop
        assert first.interval[0] < threshold < first.interval[1]
        assert decisions[-1].epoch >= 2 * FIRST_DECISION
    assert outcomes[1][-1].estimate > outcomes[0][-1].estimate
    assert outcomes[1][-1].reason is not Reason.OUT_OF_CONTENTION


def test_the_search_best_is_kept_until_it_is_resolved():
    pop, _ = warm_population()
    decisions = run(pop(), curve("star", 40, 98, 0.5, noise=0.3))
    assert decisions[-1].reason in (Reason.MAX_EPOCHS, Reason.CONVERGED)
    assert decisions[-1].estimate > 95


def test_warm_up_models_train_to_e_max():
    pop = AdaptivePopulation({"warmup_models": 3}, estimator=ESTIMATOR)
    outcomes = replay([curve(f"m{i}", 20, 60 + i, 1.0) for i in range(3)], pop, e_max=20)
    assert [o.stop_epoch for o in outcomes] == [20, 20, 20]
    assert all(o.reason is Reason.MAX_EPOCHS for o in outcomes)


@pytest.mark.parametrize("budget", [1.5, 2.0, 3.0, 5.0])
def test_budget_counts_every_network_and_is_honoured_from_the_first_decision_point_up(budget):
    curves = generate_population(replace(POPULATIONS["step-bloomers"], n_models=120), seed=3)
    capped = replay(curves, make_policy_factory("adaptive", estimator=ESTIMATOR, budget=budget), e_max=20)
    assert np.mean([o.stop_epoch for o in capped]) <= budget + 0.5  # references and warm-up included
    assert any(o.reason is Reason.BUDGET_REACHED for o in capped)


def test_more_budget_buys_a_better_ranking():
    curves = generate_population(replace(POPULATIONS["step"], n_models=300), seed=5)
    estimator = {"E": 1.0, "e_max": 20}

    def overlap(budget):
        outcomes = replay(curves, make_policy_factory("adaptive", estimator=estimator, budget=budget), e_max=20)
        return summarize(outcomes)["overlap"]["20"]

    low, mid, high = overlap(3.0), overlap(6.0), overlap(10.0)
    assert low <= mid <= high and low < high


def test_a_budget_at_the_first_decision_point_buys_no_references_and_ranks_by_what_was_seen():
    pop = AdaptivePopulation({"budget": FIRST_DECISION}, estimator=ESTIMATOR)
    curves = [curve(f"m{i}", 20, 60 + i, 1.0, noise=0.2, seed=i) for i in range(12)]
    outcomes = replay(curves, pop, e_max=20)
    assert all(o.stop_epoch == FIRST_DECISION for o in outcomes)
    assert all(o.estimate == max(c.val_acc[:3]) for o, c in zip(outcomes, curves))


# --------------------------------------------------------------------------- late bloomers


def flat(model_id: str, seed: int) -> RecordedCurve:
    return curve(model_id, 10, 10, 1.0, noise=0.4, seed=seed)


def bloomer(model_id: str, onset: float, final: float, seed: int) -> RecordedCurve:
    return curve(model_id, 10, final, 1.0, onset=onset, noise=0.4, seed=seed)


def test_late_bloomers_are_not_stopped_as_never_learners_once_the_search_has_seen_them():
    # The warm-up holds never-learners and late bloomers (onsets up to 5 epochs): flat is not final here.
    warm = [flat("f0", 0), bloomer("b0", 4.0, 85, 1), curve("l0", 40, 80, 1.0), flat("f1", 2),
            bloomer("b1", 5.0, 90, 3), curve("l1", 30, 70, 1.0), flat("f2", 4), curve("l2", 50, 88, 1.0),
            bloomer("b2", 3.0, 75, 5), curve("l3", 35, 60, 1.0)]
    pop = AdaptivePopulation({"warmup_models": 10}, estimator=ESTIMATOR, num_classes=10)
    replay(warm, pop, e_max=20)
    assert pop.flat_patience() >= 5.0
    late = run(pop(), bloomer("late", 4.5, 92, 7))
    assert late[-1].epoch > 4.5, "stopped while still flat"
    # Judged from its bloom on, it is recognised as a top network, not cut as soon as it starts learning.
    assert late[-1].reason is not Reason.OUT_OF_CONTENTION
    assert late[-1].estimate > 85
    never = run(pop(), flat("never", 9))
    assert never[-1].reason is Reason.OUT_OF_CONTENTION
    assert 5.0 <= never[-1].epoch < 20  # kept past the latest bloom seen, then stopped


def test_without_late_bloomers_in_the_search_flat_curves_stop_after_flat_patience():
    warm = [flat(f"f{i}", i) for i in range(4)] + [curve(f"l{i}", 30, 60 + 5 * i, 1.0) for i in range(6)]
    pop = AdaptivePopulation({"warmup_models": 10, "flat_patience": 2.0}, estimator=ESTIMATOR, num_classes=10)
    replay(warm, pop, e_max=20)
    never = run(pop(), flat("never", 11))
    assert never[-1].reason is Reason.OUT_OF_CONTENTION and never[-1].epoch == 2.0


def test_every_nth_flat_curve_is_watched_to_half_of_e_max_so_the_search_can_discover_bloomers():
    warm = [flat(f"f{i}", i) for i in range(4)] + [curve(f"l{i}", 30, 60 + 5 * i, 1.0) for i in range(6)]
    pop = AdaptivePopulation({"warmup_models": 10, "flat_patience": 2.0, "flat_audit": 2}, estimator=ESTIMATOR)
    replay(warm, pop, e_max=20)
    stops = [run(pop(), flat(f"n{i}", 20 + i))[-1].epoch for i in range(4)]
    assert stops == [2.0, 10.0, 2.0, 10.0]
    # A watched curve that blooms into the top x% teaches the search to wait for such bloomers.
    assert run(pop(), flat("n4", 30))[-1].epoch == 2.0
    run(pop(), bloomer("b", 6.0, 99, 31))  # the 6th flat curve: watched, and it blooms at epoch 6
    assert 7.0 <= pop.flat_patience() <= 8.0  # onset (first point above the flat level) + 1 epoch


def test_auditing_stops_after_flat_audits_max_audits():
    warm = [flat(f"f{i}", i) for i in range(4)] + [curve(f"l{i}", 30, 60 + 5 * i, 1.0) for i in range(6)]
    pop = AdaptivePopulation({"warmup_models": 10, "flat_patience": 2.0, "flat_audit": 2, "flat_audits_max": 2},
                             estimator=ESTIMATOR)
    replay(warm, pop, e_max=20)
    stops = [run(pop(), flat(f"n{i}", 20 + i))[-1].epoch for i in range(8)]
    assert stops == [2.0, 10.0, 2.0, 10.0, 2.0, 2.0, 2.0, 2.0]  # two audits, then the bloom rate is known


def test_single_model_policy_keeps_a_flat_curve_for_flat_patience_and_stops_a_converged_one():
    alone = make_policy("adaptive", estimator=ESTIMATOR, num_classes=10, flat_patience=4.0)
    decisions = run(alone, bloomer("b", 3.0, 80, 0))
    assert decisions[-1].epoch > 3.0 and decisions[-1].estimate > 50
    converged = run(make_policy("adaptive", estimator=ESTIMATOR), curve("c", 70, 80, 3.0, noise=0.2))
    assert converged[-1].reason is Reason.CONVERGED and converged[-1].epoch < 20
    assert abs(converged[-1].estimate - 80) < 1.0


# --------------------------------------------------------------------------- replay contract


def test_replay_is_deterministic():
    curves = generate_population(replace(POPULATIONS["bloomers"], n_models=30), seed=1)

    def once():
        outcomes = replay(curves, make_policy_factory("adaptive", estimator=ESTIMATOR, warmup_models=5), e_max=20)
        return [(o.stop_epoch, o.estimate, o.reason, o.decisions[-1].interval) for o in outcomes]

    assert once() == once()


def test_the_population_learns_only_what_was_observed_up_to_the_stop():
    pop, _ = warm_population()
    policy = pop()
    c = curve("bad", 20, 30, 1.5, noise=0.3)
    for i in range(len(c)):  # keep feeding after the stop, as a careless caller might
        policy.observe(*c.point(i))
    policy.finish()
    policy.finish()  # twice is harmless
    record = policy.outcome()
    assert record.epochs[-1] == FIRST_DECISION and not record.full and not record.reference
    assert pop.n_finished == 11


def test_bad_parameters_name_the_parameter_and_value():
    with pytest.raises(PolicyConfigError, match="'top'.*300"):
        make_policy("adaptive", top=300)
    with pytest.raises(PolicyConfigError, match="'warmup'"):
        make_policy_factory("adaptive", warmup=3)
    with pytest.raises(ValueError, match="num_classes"):
        AdaptivePolicy(num_classes=1)


def test_cli_replay_with_adaptive_top_and_budget(tmp_path, capsys):
    path = tmp_path / "curves.csv"
    write_csv(generate_population(replace(POPULATIONS["mixed"], n_models=25), seed=2), path)
    mean_epochs = []
    for extra in ([], ["--top", "20", "--budget", "2"]):
        assert cli_main(["replay", str(path), "--policy", "adaptive", *extra, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["summary"]["n_models"] == 25
        mean_epochs.append(np.mean([m["stop_epoch"] for m in out["models"]]))
    assert mean_epochs[1] < mean_epochs[0]
    assert cli_main(["replay", str(path), "--policy", "adaptive", "--top", "0"]) == 2
    assert "'top'" in capsys.readouterr().err


def test_a_curve_stopped_at_chance_level_is_estimated_at_what_it_showed_not_at_a_fit_through_noise():
    pop, _ = warm_population()
    noisy_flat = RecordedCurve("nf", EPOCHS.copy(), np.r_[7.7, 4.7, 10.2, 12.8, np.full(36, 11.0)], None, None)
    decisions = run(pop(), noisy_flat)
    assert decisions[-1].reason is Reason.OUT_OF_CONTENTION
    assert decisions[-1].estimate == max(noisy_flat.val_acc[: len(decisions)])
    assert all(d.prediction is None or d.prediction <= 13 for d in decisions)
