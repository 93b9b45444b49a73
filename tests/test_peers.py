"""Optuna's pruners as replay policies, driven through the real optuna package, on hand-made curves."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from peng4nn.analyzer import Reason
from peng4nn.peers import PEER_NAMES, make_peer_factory
from peng4nn.policies import PolicyConfigError
from peng4nn.replay import read_curves, replay

E = 0.5
GOOD = [min(90.0, 20.0 + 8.0 * i) for i in range(40)]  # 20, 28, ... capped at 90
FLAT = [10.0] * 40  # never learns
PEAK_THEN_DECLINE = [15.0, 18.0, 17.0, 16.0, 15.0, 14.0] + [13.0] * 34  # below the median, stops improving


def _write(tmp_path, curves: dict[str, list[float]]):
    path = tmp_path / "curves.csv"
    lines = ["model_id,epoch,val_acc"]
    for model_id, accs in curves.items():
        lines += [f"{model_id},{E * (i + 1):g},{a}" for i, a in enumerate(accs)]
    path.write_text("\n".join(lines) + "\n")
    return read_curves(path)


def _by_id(outcomes):
    return {o.model_id: o for o in outcomes}


def test_median_pruner_prunes_a_flat_curve_once_startup_trials_completed(tmp_path):
    curves = _write(tmp_path, {"g1": GOOD, "g2": GOOD, "flat": FLAT, "g3": GOOD})
    factory = make_peer_factory("optuna-median", E=E, e_max=20, n_startup_trials=2)
    out = _by_id(replay(curves, factory, e_max=20))
    # the two startup trials run to e_max; the flat curve is below the median at the first step
    assert out["g1"].stop_epoch == out["g2"].stop_epoch == 20.0
    assert out["flat"].stop_epoch == 0.5
    assert out["flat"].reason is Reason.OUT_OF_CONTENTION
    assert out["flat"].estimate == 10.0
    assert out["g3"].stop_epoch == 20.0 and out["g3"].estimate == 90.0
    states = [t.state for t in factory.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert factory.study.trials[0].value == 90.0
    assert factory.study.trials[2].intermediate_values == {1: 10.0}


def test_median_pruner_never_prunes_during_startup(tmp_path):
    curves = _write(tmp_path, {"flat": FLAT, "g1": GOOD})
    out = _by_id(replay(curves, make_peer_factory("optuna-median", E=E, e_max=20), e_max=20))
    assert out["flat"].stop_epoch == 20.0  # default n_startup_trials=5: nothing to compare with yet
    assert out["flat"].reason is Reason.MAX_EPOCHS


def test_successive_halving_keeps_only_the_top_fraction_at_each_rung(tmp_path):
    curves = _write(tmp_path, {"g1": GOOD, "flat": FLAT, "g2": GOOD})
    factory = make_peer_factory("optuna-sha", E=E, e_max=20, min_resource=1, reduction_factor=2)
    out = _by_id(replay(curves, factory, e_max=20))
    assert out["g1"].stop_epoch == 20.0  # alone at every rung: promoted
    assert out["flat"].stop_epoch == 0.5  # rung 0 (step 1): 10 is not in the top half of {20, 10}
    assert out["g2"].stop_epoch == 20.0


def test_patient_pruner_needs_both_stagnation_and_the_wrapped_pruner(tmp_path):
    curves = _write(tmp_path, {"g1": GOOD, "g2": GOOD, "flat": FLAT, "decline": PEAK_THEN_DECLINE})
    factory = make_peer_factory("optuna-patient", E=E, e_max=20, n_startup_trials=2, patience_epochs=1)
    out = _by_id(replay(curves, factory, e_max=20))
    # optuna's PatientPruner compares max(before) + min_delta > max(last patience+1 steps): a flat curve never
    # "gets worse", so it is never pruned although the median pruner alone would prune it at once
    assert out["flat"].stop_epoch == 20.0
    # the declining curve peaks at step 2 (18.0); steps 3..5 are all lower -> pruned at step 5 = epoch 2.5
    assert out["decline"].stop_epoch == 2.5
    assert out["decline"].estimate == 18.0
    assert out["decline"].reason is Reason.OUT_OF_CONTENTION


def test_each_factory_holds_its_own_study_and_trials_follow_file_order(tmp_path):
    curves = _write(tmp_path, {"a": GOOD, "b": FLAT, "c": GOOD})
    first = make_peer_factory("optuna-median", E=E, e_max=20)
    second = make_peer_factory("optuna-median", E=E, e_max=20)
    replay(curves, first, e_max=20)
    assert len(first.study.trials) == 3 and len(second.study.trials) == 0
    assert [max(t.intermediate_values.values()) for t in first.study.trials] == [90.0, 10.0, 90.0]


def test_policy_after_stop_reports_nothing_more_to_the_study(tmp_path):
    curves = _write(tmp_path, {"g1": GOOD, "g2": GOOD})
    factory = make_peer_factory("optuna-median", E=E, e_max=20, n_startup_trials=1)
    replay(curves[:1], factory, e_max=20)
    policy = factory(curves[1])
    for i, acc in enumerate([5.0, 6.0, 7.0], start=1):
        decision = policy.observe(i * E, acc)
    assert decision.stop and policy.final.epoch == 0.5  # pruned at the first point, later points ignored
    policy.finish()
    policy.finish()  # idempotent: the trial is told once
    trial = factory.study.trials[-1]
    assert trial.state is TrialState.PRUNED
    assert trial.intermediate_values == {1: 5.0}


@pytest.mark.parametrize("name", PEER_NAMES)
def test_every_peer_replays_to_a_valid_outcome(tmp_path, name):
    curves = _write(tmp_path, {f"m{i}": (GOOD if i % 3 else FLAT) for i in range(9)})
    outcomes = replay(curves, make_peer_factory(name, E=E, e_max=20), e_max=20)
    assert len(outcomes) == 9
    for o in outcomes:
        assert 0.5 <= o.stop_epoch <= 20.0
        assert o.estimate <= o.actual_max


def test_bad_peer_parameters_name_the_problem():
    with pytest.raises(PolicyConfigError, match="optuna-nope"):
        make_peer_factory("optuna-nope")
    with pytest.raises(PolicyConfigError, match="optuna-median.*unexpected_option"):
        make_peer_factory("optuna-median", unexpected_option=3)
    with pytest.raises(PolicyConfigError, match="patience_epochs cannot be negative"):
        make_peer_factory("optuna-patient", patience_epochs=-1)
    with pytest.raises(PolicyConfigError, match="'e_max' parameter"):
        make_peer_factory("optuna-sha", E=0.5, e_max=0.25)
